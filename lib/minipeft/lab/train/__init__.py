"""Training for the course: the head, the loop, the memory sampler and the linear probe, one concern per file.

    head.py     mean_pool, MeanPoolClassifier
    loop.py     TrainConfig, fit (with its schedule / extra_loss / after_step hooks), evaluate, predict, accuracy,
                make_optimizer, planned_steps (how many steps a run will take)
    memory.py   PeakRSS
    probe.py    embed (features of a frozen encoder), fit_probe (logistic regression on them)
    multitask.py  fit_multitask: one model on K tasks (round-robin batches), for the multitask prompt; Distilled
                  (per-task teachers), transfer_prompt (the shared prompt to a new task)
    federated.py  fedavg_training: a simulated federated round over clients (FedAvg of the trainable state)
    continual.py  fit_sequence / fit_per_task: tasks one after the other, every task scored after every stage;
                  backward_transfer (forgetting as one number)
"""

from .head import MeanPoolClassifier, mean_pool
from .loop import (Epochs, TrainConfig, TrainResult, accuracy, as_tokenized, device_for, eval_batches, evaluate, fit,
                   length_grouped_batches, make_optimizer, planned_steps, predict)
from .memory import PeakRSS
from .federated import FederatedResult, fedavg, fedavg_training, numbers_sent, shared_state
from .multitask import Distilled, MultitaskResult, RoundRobin, fit_multitask, transfer_prompt
from .continual import SequenceResult, backward_transfer, fit_per_task, fit_sequence
from .probe import embed, fit_probe
