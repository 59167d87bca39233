"""The paper's evaluation (Table 1): metrics and the few-shot self-reenactment protocol."""
