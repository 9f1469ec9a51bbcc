"""Fine-tuning CogVLM on a CPU: synthetic grounding data, the training text processor, SAT's real
``training_main`` with DeepSpeed on gloo, LoRA, and the recipe of the shipped trained tiny model."""
