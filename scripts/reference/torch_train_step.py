"""PyTorch side of `qat bench train-step`: the mbv2_train workload of shared/tools/reference/bench_torch.py
(torchvision mobilenet_v2(width_mult).features, input Bx3xSxS, loss mean(y^2), SGD lr 0.01 momentum 0.9),
alone in its own process so its peak RSS can be compared with ours.

Usage: $(../shared/tools/reference/setup.sh)/bin/python scripts/reference/torch_train_step.py [--width 0.5] [--batch 8] [--size 256] [--reps 10] [--threads 2]
Prints ms per step (median after 3 warm-up steps), images/s and peak RSS (MiB, ru_maxrss).
"""
import argparse, resource, statistics, time
import torch, torchvision

ap = argparse.ArgumentParser()
ap.add_argument("--width", type=float, default=0.5)
ap.add_argument("--batch", type=int, default=8)
ap.add_argument("--size", type=int, default=256)
ap.add_argument("--reps", type=int, default=10)
ap.add_argument("--threads", type=int, default=0)
a = ap.parse_args()
if a.threads:
    torch.set_num_threads(a.threads)
torch.manual_seed(0)
model = torchvision.models.mobilenet_v2(width_mult=a.width).features
opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
inp = torch.randn(a.batch, 3, a.size, a.size)

def step():
    opt.zero_grad()
    loss = model(inp).pow(2).mean()
    loss.backward()
    opt.step()

for _ in range(3):
    step()
ts = []
for _ in range(a.reps):
    t = time.perf_counter(); step(); ts.append(time.perf_counter() - t)
ms = statistics.median(ts) * 1000
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(f"torch {torch.__version__} threads {torch.get_num_threads()}: {ms:.1f} ms/step, {a.batch / ms * 1000:.1f} images/s, peak RSS {rss:.0f} MiB")
