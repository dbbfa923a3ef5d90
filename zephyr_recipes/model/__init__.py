"""Models, tokenizers and chat templates; where they run (hardware profiles, placement, launcher configs); TRL's
config fields; reward-model scoring."""
