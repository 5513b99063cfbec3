"""The training run: `cxr14 train` and each process of `torchrun main.py`.

    conductor.py     setup -> fit -> test; the run folder
    step.py          the optimizer step and the training epoch (accumulation, DDP no_sync, EMA)
    resume.py        exact resume: random states, the last.pth to continue from and its checks
    distributed.py   torchrun: process group, gathering predictions, every rank's decision
    schedule.py      ReduceLROnPlateau or a warmed-up cosine
    loss.py          focal, BCE, ASL
    runlog.py        metrics.csv per epoch and TensorBoard
    signals.py       SIGTERM / SIGINT: stop at a step boundary with last.pth saved
    demo.py          `cxr14 demo`: phantoms -> a small ConvNeXt -> test AUROC, on a CPU
"""
