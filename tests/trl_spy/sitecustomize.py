"""Test-only spy for tests/test_trl_engine.py, on PYTHONPATH of an `rftctl train` subprocess (every
torchrun worker runs it at start-up): after each generation batch of train.engine: trl, this
process's S, N, advantages, valid and kept tokens go to $RFTCTL_TRL_SPY/rank<r>-<n>.pt, and the
reward is a stand-in that splits most groups (odd character sum) so ClipV has tokens to drop."""

import os

if os.environ.get("RFTCTL_TRL_SPY"):
    import importlib.abc
    import sys

    class _Patch(importlib.abc.MetaPathFinder):
        """Patches rftctl.rl.trl_engine once it is imported (importing it here would load torch and
        TRL into every Python process, torchrun's launcher included)."""

        def find_spec(self, name, path, target=None):
            if name != "rftctl.rl.trl_engine":
                return None
            sys.meta_path.remove(self)
            import importlib.util

            spec = importlib.util.find_spec(name)
            load = spec.loader.exec_module

            def exec_module(module):
                load(module)
                _patch(module)

            spec.loader.exec_module = exec_module
            return spec

    def _patch(module):
        import torch

        cls = module.TRLEngineTrainer
        orig = cls._generate_and_score_completions
        count = [0]

        def spy(self, inputs):
            out = orig(self, inputs)
            if self.model.training:
                path = os.path.join(
                    os.environ["RFTCTL_TRL_SPY"], f"rank{os.environ.get('RANK', '0')}-{count[0]}.pt"
                )
                torch.save({k: v.cpu() for k, v in self.rftctl_last.items()}, path)
                count[0] += 1
            return out

        cls._generate_and_score_completions = spy

        def odd_char_sum(self, completions, answer, **_):
            """The stand-in grader: splits most groups (the micro policy solves almost nothing)."""
            rewards = [float(sum(map(ord, c)) % 2) for c in completions]
            self._rftctl_rewards = torch.tensor(rewards, device="cpu")
            return rewards

        cls.correct = odd_char_sum

    sys.meta_path.insert(0, _Patch())
