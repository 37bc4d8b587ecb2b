"""The in-memory description of a source dataset that :func:`gluonfuse.data.prepare.write_dataset` packs.

It lives alone so that the readers (``sources``) and the packer (``prepare``) both depend on it and
not on each other: ``prepare`` imports ``sources``, never the other way round.
"""


class Dataset:
    """A source dataset ready to pack.

    ``splits[name] = (jobs, load)`` with ``load(job) -> (rgb image HWC uint8, label, name)`` (it may
    raise ImageSkipped); ``source`` (a dict, or a function called after packing that returns one)
    goes into meta.json.
    """

    def __init__(self, name, classes, splits, source, describe=str):
        self.name = name
        self.classes = list(classes)
        self.splits = splits
        self.source = source
        self.describe = describe
