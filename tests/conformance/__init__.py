"""The shared spec every backend passes: one suite, parametrized over the stores."""
