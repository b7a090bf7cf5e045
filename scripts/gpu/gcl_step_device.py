#!/usr/bin/env python3
"""Runs the plain PyTorch reference (shared/reference/gcl_step.py) on a chosen device.

gcl_step.py builds every tensor with the default device and times steps with
time.perf_counter(); this wrapper adds `--device cpu|cuda|auto` without copying
or editing it: it sets torch's default device (torch >= 2.0) so the model, the
batch and every tensor the step makes live there, and makes perf_counter wait
for the GPU first, so a step's time is device time rather than launch time.

    python3 scripts/gpu/gcl_step_device.py --device cuda --variant full --size 128 --batch 32 ...

The reference is found at $GCL_STEP_PY, else next to the repository
(../shared/reference/gcl_step.py), else in .gpu-deps/ (the device check copies
it there, because ../shared does not travel to the device machine).
"""
import importlib.util
import os
import sys
import time as _time
import types

import torch


def find_reference():
    here = os.path.dirname(os.path.abspath(__file__))
    repo = os.path.dirname(os.path.dirname(here))
    candidates = [os.environ.get('GCL_STEP_PY', ''),
                  os.path.join(repo, '..', 'shared', 'reference', 'gcl_step.py'),
                  os.path.join(repo, '.gpu-deps', 'gcl_step.py')]
    for c in candidates:
        if c and os.path.isfile(c):
            return c
    sys.exit('gcl_step.py not found (set GCL_STEP_PY)')


def main():
    device = 'cpu'
    argv = []
    args = iter(sys.argv[1:])
    for a in args:
        if a == '--device':
            device = next(args)
        elif a.startswith('--device='):
            device = a.split('=', 1)[1]
        else:
            argv.append(a)
    if device == 'auto':
        device = 'cuda' if torch.cuda.is_available() else 'cpu'

    spec = importlib.util.spec_from_file_location('gcl_step', find_reference())
    ref = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ref)
    if device != 'cpu':
        torch.set_default_device(device)

        def perf_counter():
            torch.cuda.synchronize()
            return _time.perf_counter()

        ref.time = types.SimpleNamespace(perf_counter=perf_counter)
    sys.argv = [sys.argv[0]] + argv
    ref.main()


if __name__ == '__main__':
    main()
