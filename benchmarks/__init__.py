"""sessionkit's benchmark suite, side by side with the seed package and raw redis-py."""
