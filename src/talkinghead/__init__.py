"""talkinghead: few-shot neural talking heads (Zakharov et al., ICCV 2019).

Stages: `prepare` (videos -> face crops + landmarks -> shards), then meta-training, few-shot
fitting, animation, evaluation and a web demo. Importing the package is cheap: heavy
dependencies (torch, dlib, PyAV) load only when a stage runs.
"""

__version__ = "0.1.0"
