"""Lost runs: the pure rules (heartbeat age, a pid and its start time), and a store where a dead
process left runs RUNNING. The SIGKILL of a real sweep is test_lost_e2e's (slow)."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from types import SimpleNamespace

from loaderbench import doctor, heartbeat, keys, lost, store
from loaderbench.heartbeat import Heartbeat, process_started, process_tags
from loaderbench.launch import Launch
from loaderbench.record import tags as record_tags
from loaderbench.report.runs import to_row

HERE = lost.Machine(socket.gethostname(), heartbeat.pid_namespace())
NOW = 1_800_000_000.0


def no_such_pid() -> int:
    """A pid no process can have: the kernel hands out pids below pid_max."""
    return int(Path("/proc/sys/kernel/pid_max").read_text())


def tags_of(pid: int, started: float | None = None, beat_age_s: float = 0.0, host=None) -> dict:
    tags = {
        keys.HOST_TAG: host or HERE.host,
        keys.PID_TAG: str(pid),
        keys.HEARTBEAT_TAG: heartbeat.stamp(NOW - beat_age_s),
    }
    if started is not None:
        tags[keys.PID_STARTED_TAG] = f"{started:.2f}"
    return tags


def test_a_heartbeat_reads_back_as_its_age():
    assert heartbeat.parse_stamp(heartbeat.stamp(NOW)) == NOW
    assert lost.heartbeat_age(tags_of(1, beat_age_s=840), NOW) == 840
    assert lost.heartbeat_age({}, NOW) is None  # another tool's run: never judged by it
    assert heartbeat.parse_stamp("yesterday") is None


def test_this_process_is_running_a_dead_pid_is_gone_and_a_reused_one_is_told_apart():
    me = os.getpid()
    assert lost.process_state(me, process_started(me)) is None
    assert lost.process_state(me, None) is None
    assert lost.process_state(me, process_started(me) - 3600) == "reused"
    assert lost.process_state(no_such_pid(), None) == "gone"


def test_pid_on_this_host_heartbeat_elsewhere():
    rules = {"now": NOW, "here": HERE, "heartbeat_limit_s": 600.0}
    dead = no_such_pid()
    assert lost.why_lost(tags_of(dead), **rules) == f"process {dead} on {HERE.host} is gone"
    me = os.getpid()
    reused = lost.why_lost(tags_of(me, process_started(me) - 60), **rules)
    assert reused.startswith(f"process {me} on {HERE.host} is gone (its pid is another")
    # alive here: an old heartbeat (a server that was away) says nothing more
    assert lost.why_lost(tags_of(me, process_started(me), beat_age_s=3600), **rules) is None
    other = {"host": "host-a"}
    assert lost.why_lost(tags_of(dead, beat_age_s=840, **other), **rules) == (
        "no heartbeat for 14 min (limit 10 min)"
    )
    assert lost.why_lost(tags_of(dead, beat_age_s=300, **other), **rules) is None
    # at the start of a run: this host's pids only, no heartbeat rule
    start = {"now": NOW, "here": HERE, "heartbeat_limit_s": None}
    assert lost.why_lost(tags_of(dead, beat_age_s=3600, **other), **start) is None
    # another pid namespace (a container with the same hostname): its pid means nothing here
    ns = lost.Machine(HERE.host, "pid:[1]")
    assert not ns.holds(tags_of(dead) | {keys.PID_NS_TAG: "pid:[2]"})


def run_of(run_id: str, tags: dict, parent: str | None = None, sweep: bool = False):
    tags = dict(tags)
    if parent:
        tags[keys.PARENT_TAG] = parent
    if sweep:
        tags[keys.ROLE_TAG] = keys.ROLE_SWEEP
    info = SimpleNamespace(run_id=run_id, run_name=run_id, status="RUNNING", start_time=0)
    return SimpleNamespace(info=info, data=SimpleNamespace(tags=tags))


def test_a_parent_is_lost_once_none_of_its_runs_is_live():
    dead, me = no_such_pid(), os.getpid()
    rules = {"now": NOW, "here": HERE, "heartbeat_limit_s": 600.0}
    parent = run_of("p", tags_of(dead), sweep=True)
    live_child = run_of("c1", tags_of(me), parent="p")
    dead_child = run_of("c2", tags_of(dead), parent="p")
    found = lost.judge([parent, live_child, dead_child], **rules)
    assert [x.run.info.run_id for x in found] == ["c2"]  # a job of it still runs
    found = lost.judge([parent, dead_child], **rules)
    assert [x.run.info.run_id for x in found] == ["c2", "p"]
    assert found[1].reason.endswith("is gone, and none of its runs is live")
    assert found[1].label == "sweep p (p)"


def test_every_run_records_where_it_runs():
    tags = record_tags(Launch(), None)
    assert tags[keys.HOST_TAG] == socket.gethostname()
    assert tags[keys.PID_TAG] == str(os.getpid())
    assert abs(float(tags[keys.PID_STARTED_TAG]) - process_started(os.getpid())) < 0.01
    assert heartbeat.parse_stamp(tags[keys.HEARTBEAT_TAG]) is not None


def test_the_heartbeat_beats_off_the_caller_and_stops():
    beats = []
    client = SimpleNamespace(set_tag=lambda run_id, key, value: beats.append((run_id, key)))
    beat = Heartbeat(client, "r1", interval_s=0.01).start()
    deadline = time.time() + 5
    while len(beats) < 2 and time.time() < deadline:
        time.sleep(0.01)
    beat.stop()
    assert beats[:2] == [("r1", keys.HEARTBEAT_TAG)] * 2


def test_a_store_left_running_by_a_dead_process(sqlite_uri, capsys):
    client, exp = store.open_experiment(sqlite_uri, "e")
    dead = {**process_tags(), keys.PID_TAG: str(no_such_pid())}
    parent = client.create_run(exp, run_name="sweep x", tags={**dead, keys.ROLE_TAG: "sweep"})
    pid = parent.info.run_id
    child = client.create_run(exp, run_name="w0", tags={**dead, keys.PARENT_TAG: pid})
    alive = client.create_run(exp, run_name="here", tags=process_tags())
    elsewhere = {**process_tags(), keys.HOST_TAG: "host-b"}
    other = client.create_run(exp, run_name="there", tags=elsewhere)  # beats, fresh: live
    ids = {r.info.run_id for r in (parent, child, alive, other)}

    assert doctor.main(["--tracking-uri", sqlite_uri, "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"would mark KILLED: run {child.info.run_id} (w0): process ")
    assert out[1].startswith(f"would mark KILLED: sweep {pid} (sweep x): process ")
    assert out[2].startswith("2 lost, 2 RUNNING run(s) live in") and "dry run" in out[2]
    assert {client.get_run(i).info.status for i in ids} == {"RUNNING"}  # nothing changed

    found = lost.end_lost_here(client)  # what the next run or sweep here does first
    assert {x.run.info.run_id for x in found} == {pid, child.info.run_id}
    for run_id in (pid, child.info.run_id):
        run = client.get_run(run_id)
        assert run.info.status == "KILLED"
        assert run.data.tags[keys.KILLED_BY_TAG] == keys.KILLED_BY_LOST
        assert "is gone" in run.data.tags[keys.LOST_REASON_TAG]
    assert client.get_run(alive.info.run_id).info.status == "RUNNING"
    assert client.get_run(other.info.run_id).info.status == "RUNNING"
    row = to_row(client, client.get_run(child.info.run_id))
    assert row.error.startswith(f"lost: process {no_such_pid()} on ")


def test_a_pickled_heartbeat_does_not_beat():
    """submitit pickles the sweep callback, and its heartbeat, into every job."""
    import pickle

    beat = Heartbeat(SimpleNamespace(), "r1", interval_s=0.01)
    copy = pickle.loads(pickle.dumps(beat))
    assert copy.run_id == "r1" and copy._stop.is_set()


def test_at_a_sweeps_end_a_run_still_running_is_lost(sqlite_uri):
    client, exp = store.open_experiment(sqlite_uri, "e")
    parent = client.create_run(exp, run_name="sweep", tags={keys.ROLE_TAG: "sweep"}).info.run_id
    done = client.create_run(exp, run_name="w0", tags={keys.PARENT_TAG: parent}).info.run_id
    client.set_terminated(done, "FINISHED")
    left = client.create_run(exp, run_name="w2", tags={keys.PARENT_TAG: parent}).info.run_id
    assert [x.run.info.run_id for x in lost.end_unfinished(client, parent)] == [left]
    run = client.get_run(left)
    assert (run.info.status, run.data.tags[keys.LOST_REASON_TAG]) == ("KILLED", lost.UNFINISHED)
    assert client.get_run(done).info.status == "FINISHED"
