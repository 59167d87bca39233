"""Meta-learning (paper §3.2): the losses, the adversarial step that meta-learning and few-shot
fine-tuning share, and the training loop (`talkinghead train`)."""
