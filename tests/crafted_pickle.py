"""A checkpoint file crafted to run code when it is unpickled."""
import hashlib
import os

import torch


class Payload:
    """Unpickling this runs ``os.mkdir(marker)``: code execution, visible."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.mkdir, (self.marker, )


def crafted_checkpoint(path, marker, zip_format=True) -> str:
    """A malicious file at ``path`` (a ``pathlib.Path``) that looks like a
    model checkpoint, with a correct ``.sha256`` digest beside it (the
    proof of origin this project used to accept); unpickling it creates the
    directory ``marker``."""
    torch.save({'state_dict': {'w': torch.ones(2)}, 'meta': Payload(marker)},
               path, _use_new_zipfile_serialization=zip_format)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    (path.parent / (path.name + '.sha256')).write_text(digest + '\n')
    return str(path)
