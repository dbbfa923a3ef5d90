"""Python imports this at start-up in every process of a test that puts this folder on PYTHONPATH (the launcher's
workers included). With ZEPHYR_RECIPES_TRACE_DIR set, it records a fingerprint of every training example each rank
collates in an SFT run, and writes <dir>/rank<N>.json when training ends: the test then checks that data
parallelism gave the ranks different rows. Nothing of this lives in the package."""

import os

if os.environ.get("ZEPHYR_RECIPES_TRACE_DIR"):
    import hashlib
    import json
    from pathlib import Path

    from zephyr_recipes.stages.sft import SFT

    _build = SFT.build_trainer

    def _traced_build(self, *args, **kwargs):
        from transformers import TrainerCallback

        trainer, extra = _build(self, *args, **kwargs)
        collate, seen = trainer.data_collator, []

        def traced(examples):
            for ex in examples:
                ids = ex.get("input_ids", ex.get("prompt_ids", ex)) if isinstance(ex, dict) else ex
                seen.append(hashlib.sha1(repr(list(ids)).encode()).hexdigest()[:16])
            return collate(examples)

        class _Write(TrainerCallback):
            def on_train_end(self, args, state, control, **kw):
                where = Path(os.environ["ZEPHYR_RECIPES_TRACE_DIR"])
                where.mkdir(parents=True, exist_ok=True)
                rank = int(os.environ.get("RANK", "0"))
                (where / f"rank{rank}.json").write_text(
                    json.dumps({"rank": rank, "world_size": args.world_size, "examples": seen}))

        trainer.data_collator = traced
        trainer.add_callback(_Write())
        return trainer, extra

    SFT.build_trainer = _traced_build
