"""organsim.rl: the shared RL/reward core.

Generic and device-agnostic: it imports only torch, numpy and the standard library, never another
organsim package. Pure loss and advantage functions, the small policies the twin uses, and small
trainers around them.
"""

from organsim.rl.advantages import distributional_gae, gae, group_advantages, zero_variance_groups
from organsim.rl.agentprm import AgentPRMConfig, agentprm_loss, agentprm_targets
from organsim.rl.bapo import BAPOConfig, bapo_clip_bounds, bapo_loss, positive_share
from organsim.rl.birm import BiRMConfig, BiRMHead, birm_loss, birm_score
from organsim.rl.devices import resolve_device
from organsim.rl.dvpo import (
    QuantileCritic,
    dvpo_critic_loss,
    quantile_huber_loss,
    quantile_midpoints,
)
from organsim.rl.grpo import (
    aggregate_loss,
    clipped_surrogate_loss,
    grpo_loss,
    importance_log_weights,
    k3_kl,
)
from organsim.rl.grpo_trainer import GroupBatch, GRPOConfig, GRPOTrainer
from organsim.rl.polar import PolarRewardModel, polar_loss
from organsim.rl.policies import CategoricalPolicy, SubsetPolicy, all_subsets
from organsim.rl.ppo import ppo_policy_loss, ppo_value_loss
from organsim.rl.ppo_trainer import (
    DVPOConfig,
    DVPOTrainer,
    PPOConfig,
    PPOTrainer,
    RolloutBatch,
    VectorEnv,
)
from organsim.rl.schedules import HorizonSchedule

__all__ = [
    "AgentPRMConfig",
    "BAPOConfig",
    "BiRMConfig",
    "BiRMHead",
    "CategoricalPolicy",
    "DVPOConfig",
    "DVPOTrainer",
    "GRPOConfig",
    "GRPOTrainer",
    "GroupBatch",
    "HorizonSchedule",
    "PPOConfig",
    "PPOTrainer",
    "PolarRewardModel",
    "QuantileCritic",
    "RolloutBatch",
    "SubsetPolicy",
    "VectorEnv",
    "agentprm_loss",
    "agentprm_targets",
    "aggregate_loss",
    "all_subsets",
    "bapo_clip_bounds",
    "bapo_loss",
    "birm_loss",
    "birm_score",
    "clipped_surrogate_loss",
    "distributional_gae",
    "dvpo_critic_loss",
    "gae",
    "group_advantages",
    "grpo_loss",
    "importance_log_weights",
    "k3_kl",
    "polar_loss",
    "positive_share",
    "ppo_policy_loss",
    "ppo_value_loss",
    "quantile_huber_loss",
    "quantile_midpoints",
    "resolve_device",
    "zero_variance_groups",
]
