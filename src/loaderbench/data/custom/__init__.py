"""``dataset=custom``: the user's own ``torch.utils.data.Dataset``, with no change to loaderbench.

``dataset.target`` names a Dataset class (or a function returning a dataset) by its dotted
path; ``dataset.kwargs`` are its arguments. The validation split comes from a second call
(``dataset.val_target`` and/or ``dataset.val_kwargs``, merged over ``kwargs``) or is held out
from the training dataset by ``val_fraction`` (map-style only: which indices is a pure function
of ``seed``). Samples are ``(image, label)`` or a dict (``image_key``, ``label_key``), the image
a C×H×W tensor or a PIL image; the first sample of each split is read here, so a wrong one
stops the job before its run opens. Both splits then sit in a DatasetPair like every dataset
option's, and get loaderbench's seeding, transforms and accounting.

:mod:`.samples` checks every sample as it is read; :func:`make_custom` (:mod:`.build`) is the
``_target_`` of ``conf/dataset/custom.yaml``.
"""

from loaderbench.data.custom.build import make_custom
from loaderbench.data.custom.samples import SampleError, SampleSpec, UserDataset, UserIterable

__all__ = ["SampleError", "SampleSpec", "UserDataset", "UserIterable", "make_custom"]
