"""Every fixed name other tools read: metric keys, params, tags, artifact file names.

These are the contract of DESIGN.md: extend them, never rename them. Nothing else in the
package spells them, and this module imports nothing.
"""

# --- tags -----------------------------------------------------------------------------------
PARENT_TAG = "mlflow.parentRunId"
RUN_NAME_TAG = "mlflow.runName"
NOTE_TAG = "mlflow.note.content"  # the run description the MLflow UI renders
OVERRIDES_TAG = "loaderbench.overrides"
SWEEP_DIR_TAG = "loaderbench.sweep_dir"
OUTPUT_DIR_TAG = "loaderbench.output_dir"
LAUNCHER_TAG = "loaderbench.launcher"
VERDICT_TAG = "loaderbench.verdict"
WINNER_TAG = "loaderbench.winner"  # the winning child's run name, or "none" within noise
REPRO_TAG = "loaderbench.reproducibility"
ROLE_TAG = "loaderbench.role"  # "sweep" on a parent run, "job" on a run of a job
ROLE_SWEEP, ROLE_JOB = "sweep", "job"
REPRODUCES_TAG = "loaderbench.reproduces"  # on a re-run: the id of the run it re-ran
REPRODUCE_RESULT_TAG = "loaderbench.reproduce_result"  # match / mismatch: ...
CEILINGS_TAG = "loaderbench.ceilings"  # the bottleneck in words
RECOMMENDATION_TAG = "loaderbench.dataloader"  # a sweep parent: the DataLoader(...) to paste
KILLED_BY_TAG = "loaderbench.killed_by"  # on a KILLED run: the signal, e.g. SIGTERM
KILLED_BY_LOST = "lost"  # ... or "lost": found dead, its process or heartbeat gone
LOST_REASON_TAG = "loaderbench.lost_reason"  # e.g. "process 1234 on host-a is gone"
# Where a run's process runs, so a run left RUNNING by a dead one can be told from a live one.
HOST_TAG = "loaderbench.host"
PID_TAG = "loaderbench.pid"
PID_STARTED_TAG = "loaderbench.pid_started"  # its start, s since the epoch: a reused pid differs
PID_NS_TAG = "loaderbench.pid_ns"  # its pid namespace (Linux): containers with one hostname
HEARTBEAT_TAG = "loaderbench.heartbeat"  # UTC, refreshed every minute while the process lives
EMULATED_TAG = "loaderbench.emulated"  # "true" on a run whose step was emulated (bench.mode)
FED_TAG = "loaderbench.fed"  # an emulated run: FED or STARVED (rule: loaderbench.feeding)
FED, STARVED = "fed", "starved"
# "ok", or which epochs delivered a sample twice or not at all (the run's warning)
EXACTLY_ONCE_TAG = "loaderbench.exactly_once"
EXACTLY_ONCE_OK = "ok"
JOB_ID_TAG = (
    "loaderbench.job_id"  # the scheduler's job (Slurm: 12_3 in an array; submitit_local: a pid)
)
EFFECTIVE_PREFIX = "effective."  # params effective.<knob>, tags effective.<knob>.reason
ENV_PREFIX = "env."
VERSION_TAG = "env.loaderbench"  # every run: loaderbench.__version__
# What bit-exactness depends on: other versions or another CPU may round differently.
ENV_TAGS = (
    "env.torch",
    "env.torchvision",
    "env.numpy",
    "env.pillow",
    "env.cpu_model",
    "env.torch_threads",
    "env.git_sha",
    VERSION_TAG,  # an installed package has no git_sha: its version is what says which code
)

# Experiment tags the MLflow UI reads: the kind (so the UI opens on training runs, not GenAI
# traces) and saved views, one per sweep (`...runs?viewStateShareKey=<parent run id>`).
EXPERIMENT_KIND_TAG, EXPERIMENT_KIND = "mlflow.experimentKind", "custom_model_development"
SHARED_VIEW_PREFIX = "mlflow.sharedViewState."

# --- environment variables ------------------------------------------------------------------
PARENT_ENV = "LOADERBENCH_PARENT_RUN_ID"  # set by the sweep callback, read by its jobs
SWEPT_ENV = "LOADERBENCH_SWEPT_KEYS"  # likewise: the swept keys, comma-separated

# --- artifacts ------------------------------------------------------------------------------
CONFIG_ARTIFACT = "config.yaml"  # every run: the resolved config
ERROR_ARTIFACT = "error.txt"  # a failed run (and its job directory): the traceback
SWEEP_ARTIFACT = "sweep.txt"  # a sweep parent: the sweep as typed
BASE_CONFIG_ARTIFACT = "base_config.yaml"  # a sweep parent: the unresolved base config
# In a job directory: the record of a run whose tracking server was unreachable at its end.
OFFLINE_DIR = "mlflow-offline"
REPORT_MD, REPORT_CSV = "report.md", "report.csv"
THROUGHPUT_PNG, STALL_PNG = "throughput.png", "stall.png"
TRIALS_PNG = "trials.png"  # a tune sweep: throughput per trial, in order

# --- params (config paths the code reads back from the store) -------------------------------
WORKERS_PARAM = "loader.num_workers"
BACKEND_PARAM = "loader.backend"  # dataloader (the default) or threads
LOADER_BACKENDS = ("dataloader", "threads")
DATALOADER, THREADS = LOADER_BACKENDS
BACKEND_LIBRARIES = {THREADS: "torchdata"}  # the import a backend needs beyond torch
THREADS_EXTRA = "threads"  # pip install 'loaderbench[threads]'
BACKEND_EFFECTIVE = "effective.backend"
BACKEND_LIBRARY_EFFECTIVE = "effective.backend_library"  # e.g. "torchdata 0.11.0"
GIL_EFFECTIVE = "effective.gil"
AUGMENTATION_TAG = "loaderbench.augmentation"  # whose random draws are the same for any loader
MODE_PARAM = "bench.mode"
REPEAT_PARAM = "bench.repeat"
PROBE_PARAM = "bench.probe_batches"  # set: the run is a tuner's probe, not a full run
MODE_TRAIN = "train"
MODE_EMULATED = "emulated"  # the loader feeds an emulated device step (loaderbench.emulated)
MODES = (MODE_TRAIN, "loader_only", "model_only")  # training and its two ceilings
ALL_MODES = (*MODES, MODE_EMULATED)  # the values of bench.mode
# What the emulated step is (bench.step_ms / step_per_sample_ms / step_from), and how the loop
# waits for it: the conditions a loader is fed under, not loader settings.
STEP_PARAMS = ("bench.step_ms", "bench.step_per_sample_ms", "bench.step_from")
STEP_SYNC_PARAM = "bench.step_sync"
STEP_MS_EFFECTIVE = "effective.step_ms"  # T, the emulated step's milliseconds per batch
TORCH_THREADS_PARAM = "trainer.torch_threads"
TORCH_THREADS_EFFECTIVE = "effective.torch_threads"  # the intra-op threads the step ran with
# Loader settings that do nothing without worker processes.
WORKER_ONLY_PARAMS = (
    BACKEND_PARAM,  # threads at num_workers=0 are the DataLoader at 0
    "loader.multiprocessing_context",
    "loader.persistent_workers",
    "loader.prefetch_factor",
)
# Params that are not knobs a user set: derived from the run, or where its results went.
NOT_KNOB_PREFIXES = (EFFECTIVE_PREFIX, "data.", "mlflow.", "hydra.", "given.")
# Settings that must not change what is trained: runs differing only in these must give
# bit-identical histories (the report checks it). Everything else defines training.
TRAINING_INVARIANT_PARAMS = (
    WORKERS_PARAM,
    *WORKER_ONLY_PARAMS,
    "loader.pin_memory",
    "loader.timeout",
    "loader.sharing_strategy",
    "dataset.decoder",
    "dataset.read_latency_ms",
    "dataset.cold_cache",
    "dataset.storage",  # memory or mmap: the same tensor, read from RAM or from a mapped file
    "device.type",
    REPEAT_PARAM,
)

# --- per-epoch metrics (step = epoch) -------------------------------------------------------
SAMPLES_PER_S = "throughput/samples_per_s"
STEADY_SAMPLES_PER_S = "throughput/steady_samples_per_s"
EPOCH_S = "time/epoch_s"
DATA_WAIT_S = "time/data_wait_s"
COMPUTE_S = "time/compute_s"
WARMUP_S = "time/warmup_s"
EVAL_S = "time/eval_s"  # evaluation after the epoch (not in epoch_s)
DATA_WAIT_FRACTION = "stall/data_wait_fraction"
LOSS_TRAIN, ACC_TRAIN, LOSS_VAL, ACC_VAL = "loss/train", "acc/train", "loss/val", "acc/val"
# Exactly-once accounting of the training epoch's sample ids (train and loader_only modes).
SAMPLES_SEEN = "data/samples_seen"  # samples delivered, repeats included
DUPLICATE_SAMPLES = "data/duplicate_samples"  # deliveries beyond a sample's first
MISSING_SAMPLES = "data/missing_samples"  # samples never delivered (drop_last's tail included)
# With ranks: samples repeated to even out the ranks' shares (expected, not duplicates).
PADDED_SAMPLES = "data/padded_samples"
# An emulated run: the ms a step waited for its batch (the device sat idle), per steady step.
STEP_WAIT_MS = "stall/step_wait_ms"

# --- once per run ---------------------------------------------------------------------------
SUMMARY_SAMPLES_PER_S = "summary/samples_per_s"
SUMMARY_STEADY = "summary/steady_samples_per_s"
# The run's own 95% interval for its steady throughput (bootstrap over blocks of steps).
SUMMARY_STEADY_LOW = "summary/steady_samples_per_s_low"
SUMMARY_STEADY_HIGH = "summary/steady_samples_per_s_high"
SUMMARY_FIRST_BATCH = "summary/first_batch_s"
SUMMARY_DATA_WAIT = "summary/data_wait_fraction"
SUMMARY_VAL_ACC = "summary/val_acc"
SUMMARY_TRAIN_LOSS = "summary/train_loss"
SUMMARY_WALL = "summary/wall_s"
SUMMARY_WARMUP_BATCHES = "summary/warmup_batches"
# A probe's (bench.probe_batches) throughput projected to full epochs: what the tuner ranks.
SUMMARY_PROJECTED = "summary/projected_samples_per_s"
# Multi-rank runs (trainer.ranks > 1): each rank's stall per epoch, and the rank that waited most.
RANK_DATA_WAIT_FRACTION = "rank/{}/data_wait_fraction"  # .format(rank)
SUMMARY_SLOWEST_RANK = "summary/slowest_rank"
RANKS_PARAM = "trainer.ranks"
# An emulated run: summary of stall/step_wait_ms over the steady epochs (what fed is judged on).
SUMMARY_STEP_WAIT = "summary/step_wait_ms"
# A train or model_only run: its steady compute per batch, in ms (what bench.step_from reads).
SUMMARY_COMPUTE_PER_BATCH = "summary/compute_per_batch_ms"
SETUP_S = "time/setup_s"  # validation, dataset, model and loaders, before the first epoch
PEAK_RSS = "memory/peak_rss_mb"
PEAK_PSS = "memory/peak_pss_mb"
PEAK_USS = "memory/peak_uss_mb"
PEAK_ANON = "memory/peak_anon_mb"
WORKERS_PSS = "memory/workers_pss_mb"
WORKERS_USS = "memory/workers_uss_mb"  # the workers' private pages: what they copied
PEAK_SHM = "memory/peak_shm_mb"
CPU_UTILIZATION = "cpu/utilization"
MONITOR_CPU_FRACTION = "overhead/monitor_cpu_fraction"
MONITOR_SAMPLES = "overhead/monitor_samples"
MONITOR_PSS_SAMPLES = "overhead/monitor_pss_samples"  # of them, how many read PSS/USS
IDLE_WORKERS = "data/idle_workers"  # workers with no shard to read (fewer streams than workers)

# --- sweep parent ---------------------------------------------------------------------------
SWEEP_N_RUNS = "sweep/n_runs"
SWEEP_N_FAILED = "sweep/n_failed"
SWEEP_BEST = "sweep/best_samples_per_s"
SWEEP_EFFICIENCY = "sweep/pipeline_efficiency"  # train ÷ min(loader_only, model_only)
# A tune sweep (sweep=tune): its trials (probes and full runs), its probes and its wall time.
TUNE_TRIALS, TUNE_PROBES, TUNE_WALL = "tune/trials", "tune/probes", "tune/wall_s"
TUNE_SKIPPED = "tune/skipped"  # candidates left unprobed to keep the search's cost cap
TUNE_GRID_S = "tune/grid_s"  # the grid over the same space, estimated: what the cap is a share of

EPOCH_KEYS = (SAMPLES_PER_S, EPOCH_S, DATA_WAIT_S, COMPUTE_S, DATA_WAIT_FRACTION)
EPOCH_MODEL_KEYS = (LOSS_TRAIN, ACC_TRAIN, LOSS_VAL, ACC_VAL)
SUMMARY_KEYS = (
    SUMMARY_SAMPLES_PER_S,
    SUMMARY_STEADY,
    SUMMARY_FIRST_BATCH,
    SUMMARY_DATA_WAIT,
    SUMMARY_WALL,
    PEAK_RSS,
)
SUMMARY_MODEL_KEYS = (SUMMARY_VAL_ACC, SUMMARY_TRAIN_LOSS)

# --- a user's own pipeline, and training predicted from the ceilings (report/predict.py) -----
CPU_COUNT_TAG = "env.cpu_count"
CPU_AFFINITY_TAG = "env.cpu_affinity"  # the cores this process may use
TORCH_THREADS_TAG = "env.torch_threads"
TRAIN_SIZE_PARAM = "data.train_size"
BATCH_SIZE_PARAM = "loader.batch_size"
EPOCHS_PARAM = "trainer.epochs"
PERSISTENT_EFFECTIVE = EFFECTIVE_PREFIX + "persistent_workers"
SHUFFLE_EFFECTIVE = EFFECTIVE_PREFIX + "shuffle"  # False for an IterableDataset (with a reason)
MODEL_EFFECTIVE_PREFIX = EFFECTIVE_PREFIX + "model."  # a model key its target does not take
