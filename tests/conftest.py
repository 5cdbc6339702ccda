"""Test-wide settings: loud rank promotion (a [B] vs [B, 1] mix-up raises)."""
import jax

jax.config.update("jax_numpy_rank_promotion", "raise")
