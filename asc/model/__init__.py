"""Networks and the LightningModule that trains them.

:mod:`~asc.model.networks` holds plain ``nn.Module``s (frozen ImageNet backbones, the small CNN, the head),
:mod:`~asc.model.embeddings` the frozen backbone's cached outputs (a faster input to the same module), and
:mod:`~asc.model.module` the LightningModule.
"""
