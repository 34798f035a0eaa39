"""Let fairadv load its plugins before the tests import ``fairadv_wat`` themselves, as in normal use (fairadv
imports the plugin through its entry point and records the distribution that registered each component)."""

import torch

from fairadv.registry import load_plugins

load_plugins()
torch.set_num_threads(1)  # tiny tensors: thread hand-off costs more than the arithmetic
