"""The application: the ``coupled`` command line, run ids and W&B mode, ``--ckpt_path``/``wandb:`` resolution,
the local artifact index, the CheckpointIO plugin and the one-line errors.

It sits on top of the import order (the application → callbacks and datamodules → lightning_modules): nothing
imports it. ``coupled.load`` reads a trained model from a checkpoint path or a ``wandb:`` reference.
"""

from coupled.load import load

__all__ = ["load"]
