"""A job as several ranks on this machine (``trainer.ranks=N``): DDP, one process per rank.

:mod:`.plan` checks what the ranks will be (the process-group backend, each rank's device and
torch threads, the cores they share) in :func:`loaderbench.job.build`; :mod:`.agent` starts them
through torch's elastic launcher (what ``torchrun --nproc-per-node N`` runs) from the launching
process, which keeps the job's one run, its stop handling and its resource monitor; :mod:`.rank`
is one rank: it builds its dataset, loader and model from the config alone, trains through
DistributedDataParallel over its share of each epoch, and (rank 0) passes the ranks' figures
on; :mod:`.merge` makes them the job's. Imported only when a job has several ranks.
"""
