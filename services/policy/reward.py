"""The hybrid reward."""

from schemas.records import RewardConfig

PAPER_REWARD = RewardConfig()


def hybrid_reward(
    quality: float, tokens: float, retries: float, config: RewardConfig = PAPER_REWARD
) -> float:
    """``r = wq*Q - wc*min(tokens/cap, 1) - wr*retries``; paper: 1.0, 0.3, 8000, 0.15."""
    cost = min(tokens / config.token_cap, 1.0)
    return (
        config.quality_weight * quality - config.cost_weight * cost - config.retry_penalty * retries
    )
