"""The hybrid reward."""

from schemas.records import RewardConfig

PAPER_REWARD = RewardConfig()


def hybrid_reward(
    quality: float, tokens: float, retries: float, config: RewardConfig = PAPER_REWARD
) -> float:
    """``r = wq*clamp(Q, 0, 1) - wc*min(tokens/cap, 1) - wr*retries``; paper: 1.0, 0.3, 8000,
    0.15. A judge's score outside [0, 1] counts as its nearest end, as the reference does.

    With ``cost_shape`` linear the cost is ``tokens/cap`` uncapped: past the cap the paper's
    reward stops telling a 9k-token trajectory from a 20k one."""
    clamped = min(max(quality, 0.0), 1.0)
    return (
        config.quality_weight * clamped
        - config.cost_weight * token_cost(tokens, config)
        - config.retry_penalty * retries
    )


def token_cost(tokens: float, config: RewardConfig = PAPER_REWARD) -> float:
    """The cost term of ``hybrid_reward`` before its weight."""
    cost = tokens / config.token_cap
    return min(cost, 1.0) if config.cost_shape == "capped" else cost
