"""One small module per step of the method; each builds the TRL trainer for its step."""

from . import dpo, sft

STAGES = {"sft": sft, "dpo": dpo}
