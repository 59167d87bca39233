"""Applications over the stages: the Gradio demo and the live page."""
