"""The hybrid reward."""

from schemas.records import RewardConfig

PAPER_REWARD = RewardConfig()


def hybrid_reward(
    quality: float, tokens: float, retries: float, config: RewardConfig = PAPER_REWARD
) -> float:
    """``r = wq*Q - wc*min(tokens/cap, 1) - wr*retries``; paper: 1.0, 0.3, 8000, 0.15.

    With ``cost_shape`` linear the cost is ``tokens/cap`` uncapped: past the cap the paper's
    reward stops telling a 9k-token trajectory from a 20k one."""
    cost = tokens / config.token_cap
    if config.cost_shape == "capped":
        cost = min(cost, 1.0)
    return (
        config.quality_weight * quality - config.cost_weight * cost - config.retry_penalty * retries
    )


def token_cost(tokens: float, config: RewardConfig = PAPER_REWARD) -> float:
    """The cost term of ``hybrid_reward`` before its weight."""
    cost = tokens / config.token_cap
    return min(cost, 1.0) if config.cost_shape == "capped" else cost
