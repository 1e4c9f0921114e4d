"""``dataset=tensor``: float32 images already in memory, so loading is indexing and collating.

It is the workload of the common "num_workers=0 is enough" advice, and the one dataset that
holds its samples (by design): a forked worker shares the pages, a spawned worker receives the
tensors through shared memory (torch moves their storage to /dev/shm, which must be large
enough). The memory is checked before anything is allocated (:mod:`.memory`); what does not fit
runs with ``storage=mmap``, the same numbers read from a file (:mod:`.mapped`).
:func:`make_tensor` (:mod:`.build`) is the ``_target_`` of ``conf/dataset/tensor.yaml``.
"""

# make_fake lived here: the _target_ loaderbench.data.tensor.make_fake keeps working
from loaderbench.data.fake import make_fake
from loaderbench.data.tensor.build import STORAGE, make_tensor
from loaderbench.data.tensor.mapped import MappedImages
from loaderbench.data.tensor.memory import check_memory, tensor_bytes

__all__ = ["STORAGE", "MappedImages", "check_memory", "make_fake", "make_tensor", "tensor_bytes"]
