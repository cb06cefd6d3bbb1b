"""Probe for issue 3 ("keep it alive"): fidelity vs motion of a CPPN fitted to an image, by where z enters.

Not a finished benchmark: a research script kept so the next step starts from measured facts (docs/reference-images.md).

    python bench/keep_alive_probe.py 300 2000        # training steps to try

A synthetic album cover (96x96) is fitted at z = 0 (Adam, 4096-pixel minibatches). The network is then driven
by the demo song's z with a sweep of gains, and for each way of injecting z it prints
``gain: SSIM(mean frame, image) / mean |frame difference| (0-255)``:

- naive L1 only: z enters the first layer only, through its random N(0, 1) weights (the plain CPPN);
- wmod ...: per-frame weight modulation, W_k + gain * std(W_k) * sum_j z_j R_kj / sqrt(n_z), R frozen N(0, 1),
  in the output layer, the last hidden layer, and so on.
"""
import torch, numpy as np, time, math, sys
from PIL import Image, ImageDraw
from scipy.ndimage import gaussian_filter
torch.set_num_threads(1)
from neuromv.demo import demo_song
from neuromv.features import song_latents
from neuromv.cppn import coordinate_grid

def cover(n=128):
    im = Image.new('RGB', (n, n), (20, 30, 80)); d = ImageDraw.Draw(im)
    for i in range(n):  # vertical gradient
        d.line([(0, i), (n, i)], fill=(20 + i, 30 + i // 3, 120 - i // 2))
    d.ellipse([n*0.2, n*0.15, n*0.75, n*0.7], fill=(240, 180, 40))
    d.rectangle([n*0.55, n*0.55, n*0.9, n*0.9], fill=(200, 40, 60))
    d.polygon([(n*0.1, n*0.9), (n*0.35, n*0.5), (n*0.6, n*0.95)], fill=(30, 160, 90))
    return np.asarray(im).astype(np.float32) / 255

def ssim(a, b):  # a, b in [0,255], HxWx3
    C1, C2 = (0.01*255)**2, (0.03*255)**2; vals=[]
    for c in range(3):
        x, y = a[..., c].astype(np.float64), b[..., c].astype(np.float64)
        mx, my = gaussian_filter(x, 1.5), gaussian_filter(y, 1.5)
        sxx = gaussian_filter(x*x, 1.5) - mx*mx; syy = gaussian_filter(y*y, 1.5) - my*my; sxy = gaussian_filter(x*y, 1.5) - mx*my
        vals.append(np.mean(((2*mx*my + C1)*(2*sxy + C2)) / ((mx*mx + my*my + C1)*(sxx + syy + C2))))
    return float(np.mean(vals))

N = 96; NZ = 32; H = 32
GAINS = [0.1, 0.3, 1.0, 2.0, 3.0, 5.0, 8.0]
img = cover(N); target = torch.from_numpy(img.reshape(-1, 3))
coords = coordinate_grid(N, N)
a = demo_song(); z_song = torch.from_numpy(song_latents(a.mono(), a.sr, fps=30, n_mels=NZ))[::2]  # 225 frames

class Net(torch.nn.Module):
    def __init__(s, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        sizes = [3] + [H]*5 + [3]
        s.W = torch.nn.ParameterList([torch.nn.Parameter(torch.randn(b, a_, generator=g)) for a_, b in zip(sizes[:-1], sizes[1:])])
        s.b = torch.nn.ParameterList([torch.nn.Parameter(torch.randn(b, generator=g)) for b in sizes[1:]])
        s.M = [torch.randn(b, NZ, generator=g) for b in sizes[1:]]  # frozen z projections per layer (incl. output)
        s.R = [torch.randn(NZ, b, a_, generator=g) for a_, b in zip(sizes[:-1], sizes[1:])]  # frozen weight modulations
    def forward(s, c, z=None, scales=None, wmod=None):  # z: (F, NZ) -> out (F, P, 3)
        h = c[None]
        acts = []
        for k in range(6):
            if z is not None and wmod is not None and wmod[k] != 0:
                Wf = s.W[k][None] + wmod[k] * torch.einsum('fj,jab->fab', z, s.R[k]) / math.sqrt(NZ)
                pre = torch.einsum('fpa,fba->fpb', h.expand(z.shape[0], -1, -1), Wf) + s.b[k]
            else:
                pre = h @ s.W[k].T + s.b[k]
            if z is not None and scales[k] != 0:
                pre = pre + scales[k] * (z @ s.M[k].T)[:, None, :]
            acts.append(pre)
            h = torch.tanh(pre) if k < 5 else torch.sigmoid(pre)
        return h, acts

def fit(steps, seed=0):
    net = Net(seed); opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    P = coords.shape[0]; g = torch.Generator().manual_seed(1)
    for i in range(steps):
        idx = torch.randint(0, P, (4096,), generator=g)
        out, _ = net(coords[idx]); loss = ((out[0] - target[idx])**2).mean()
        opt.zero_grad(); loss.backward(); opt.step()
    return net

@torch.no_grad()
def evaluate(net, scales, wmod=None):
    frames = []
    for s in range(0, len(z_song), 75):
        out, _ = net(coords, z_song[s:s+75], scales, wmod); frames.append(out)
    fr = torch.cat(frames).reshape(-1, N, N, 3).numpy() * 255
    fid = ssim(fr.mean(0), img * 255)
    react = np.abs(np.diff(fr, axis=0)).mean() / 2  # z_song is every 2nd frame: halve to approximate per-frame
    return fid, react

for steps in [int(x) for x in sys.argv[1:]] or [300, 1000, 3000]:
    t = time.time(); net = fit(steps)
    with torch.no_grad():
        out, acts = net(coords)
        rms = [a.pow(2).mean().sqrt().item() for a in acts]
    static_ssim = ssim(out[0].reshape(N, N, 3).numpy()*255, img*255)
    print(f'steps {steps}: fit {time.time()-t:.1f}s, static SSIM {static_ssim:.3f}, layer RMS {np.round(rms,1)}')
    wstd = [w.detach().pow(2).mean().sqrt().item() for w in net.W]
    variants = {
        'naive L1 only':    (lambda g: [g, 0, 0, 0, 0, 0], None),
        'wmod out':         (lambda g: [0]*6, lambda g: [0]*5 + [g * wstd[5]]),
        'wmod L5+out':      (lambda g: [0]*6, lambda g: [0]*4 + [g * wstd[4], g * wstd[5]]),
        'wmod L4-5+out':    (lambda g: [0]*6, lambda g: [0]*3 + [g * w for w in wstd[3:]]),
        'wmod all':         (lambda g: [0]*6, lambda g: [g * w for w in wstd]),
    }
    for name, (mk, mkw) in variants.items():
        row = []
        for gain in GAINS:
            fid, react = evaluate(net, mk(gain), mkw(gain) if mkw else None); row.append(f'g{gain}: {fid:.2f}/{react:.1f}')
        print(f'  {name:18s}', '  '.join(row))
