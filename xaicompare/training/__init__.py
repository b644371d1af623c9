"""Training and fine-tuning: the offline zoo's recipe and fine-tuning any model on a dataset.

Above the models (it trains them), beside the engine's users (it never runs the explain plan).
"""

from .finetune import finetune
from .zoo_train import train_zoo

__all__ = ["finetune", "train_zoo"]
