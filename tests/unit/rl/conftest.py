"""Tiny tasks for the RL core's learning tests: a contextual subset bandit and a chain walk."""

import pytest
import torch
from torch import Tensor

from organsim.rl import SubsetPolicy, all_subsets


class SubsetBandit:
    """Contextual bandit over subsets, shaped like choosing which organ systems to consult.

    Each of ``num_contexts`` context types (a random feature vector) has 1 to 3 relevant
    candidates out of ``num_choices``. Choosing subset S for context c pays

        coverage(S, c) + 0.25 * [all relevant chosen] - 0.15 * (irrelevant chosen)

    plus Gaussian noise (std 0.1) in the sampled reward. Expected rewards are computed exactly by
    enumerating all 2^K subsets.
    """

    def __init__(self, *, num_contexts: int = 16, num_choices: int = 8, context_dim: int = 16):
        generator = torch.Generator().manual_seed(1234)
        self.num_choices = num_choices
        self.features = torch.randn(num_contexts, context_dim, generator=generator)
        self.relevant = torch.zeros(num_contexts, num_choices)
        sizes = torch.randint(1, 4, (num_contexts,), generator=generator)
        for context, size in enumerate(sizes.tolist()):
            chosen = torch.randperm(num_choices, generator=generator)[:size]
            self.relevant[context, chosen] = 1.0
        self.subsets = all_subsets(num_choices)  # (2^K, K)
        self.table = self.mean_reward(torch.arange(num_contexts), self.subsets)  # (C, 2^K)

    def mean_reward(self, context_ids: Tensor, subsets: Tensor) -> Tensor:
        """Noise-free reward; context_ids (B,), subsets (S, K) or (B, S, K) -> (B, S)."""
        relevant = self.relevant[context_ids.cpu()].unsqueeze(1)  # (B, 1, K)
        subsets = subsets.cpu().float()
        chosen_relevant = (subsets * relevant).sum(-1)
        coverage = chosen_relevant / relevant.sum(-1)
        complete = (chosen_relevant == relevant.sum(-1)).float()
        irrelevant = (subsets * (1.0 - relevant)).sum(-1)
        return coverage + 0.25 * complete - 0.15 * irrelevant

    def sample_contexts(self, batch_size: int) -> Tensor:
        return self.features[torch.randint(len(self.features), (batch_size,))]

    def context_ids(self, contexts: Tensor) -> Tensor:
        matches = (contexts.cpu().unsqueeze(1) == self.features.unsqueeze(0)).all(-1)  # (B, C)
        return matches.float().argmax(-1)

    def reward_fn(self, contexts: Tensor, subsets: Tensor) -> Tensor:
        """Noisy reward of (B, G, K) subsets for (B, context_dim) contexts -> (B, G)."""
        mean = self.mean_reward(self.context_ids(contexts), subsets)
        return mean + 0.1 * torch.randn_like(mean)

    def optimal_value(self) -> float:
        return self.table.max(dim=1).values.mean().item()

    def expected_value(self, policy: SubsetPolicy) -> float:
        device = next(policy.parameters()).device
        probabilities = policy.subset_probabilities(
            self.features.to(device), self.subsets.to(device)
        ).cpu()
        return (probabilities * self.table).sum(dim=1).mean().item()


class ChainWalk:
    """Vectorised chain: start at cell 0, reach the last cell; actions left, stay, right.

    Reward +1 on reaching the end (episode ends), -0.01 on every other step; episodes are cut at
    ``max_steps``. Observation: one-hot cell and the fraction of the time limit used. The best
    return is ``1 - 0.01 * (length - 2)``; a random walk rarely gets there in time.
    """

    num_actions = 3

    def __init__(self, num_envs: int, *, length: int = 12, max_steps: int = 30):
        self.num_envs = num_envs
        self.length = length
        self.max_steps = max_steps
        self.observation_dim = length + 1
        self.position = torch.zeros(num_envs, dtype=torch.long)
        self.elapsed = torch.zeros(num_envs, dtype=torch.long)

    @property
    def optimal_return(self) -> float:
        return 1.0 - 0.01 * (self.length - 2)

    def _observation(self) -> Tensor:
        cells = torch.nn.functional.one_hot(self.position, self.length).float()
        return torch.cat([cells, (self.elapsed.float() / self.max_steps).unsqueeze(-1)], dim=-1)

    def reset(self) -> Tensor:
        self.position.zero_()
        self.elapsed.zero_()
        return self._observation()

    def step(self, actions: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        self.position = (self.position + actions.cpu() - 1).clamp(0, self.length - 1)
        self.elapsed += 1
        reached = self.position == self.length - 1
        reward = torch.where(reached, 1.0, -0.01)
        done = reached | (self.elapsed >= self.max_steps)
        self.position[done] = 0
        self.elapsed[done] = 0
        return self._observation(), reward, done


def evaluate_chain(policy: torch.nn.Module, *, num_episodes: int = 256, **chain_kwargs) -> float:
    """Mean undiscounted return of one episode in each of ``num_episodes`` chains (sampled actions)."""
    env = ChainWalk(num_episodes, **chain_kwargs)
    device = next(policy.parameters()).device
    observation = env.reset()
    returns = torch.zeros(num_episodes)
    finished = torch.zeros(num_episodes, dtype=torch.bool)
    with torch.no_grad():
        for _ in range(env.max_steps):
            action = policy.get_action_and_value(observation.to(device))[0]
            observation, reward, done = env.step(action)
            returns += reward * (~finished)
            finished |= done
    return returns.mean().item()


@pytest.fixture(autouse=True)
def single_thread():
    """The RL tests use tiny networks: one intra-op thread is faster and steadier on 2 cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def subset_bandit() -> SubsetBandit:
    return SubsetBandit()


@pytest.fixture
def chain_walk() -> type[ChainWalk]:
    return ChainWalk


@pytest.fixture
def chain_return():
    return evaluate_chain
