#!/usr/bin/python3
"""Writes the tiny PyTorch checkpoints the weights tests read (committed; tests need no Python).

Run with Debian's python3 + python3-torch:  /usr/bin/python3 models/weights/testdata/make_ckpt_fixtures.py
Values are deterministic (arange-based) so tests can check them exactly.
"""
import collections
import io
import os
import zipfile

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
# The hostile payloads would create this file; the tests check it never appears.
MARKER = "/tmp/sdflow-weights-test-pwned"


def out(name):
    return os.path.join(HERE, name)


def base_dict():
    d = collections.OrderedDict()
    d["w32"] = torch.arange(12, dtype=torch.float32).reshape(3, 4) / 4
    d["w16"] = (torch.arange(6, dtype=torch.float32) - 2.5).to(torch.float16).reshape(2, 3)
    d["wbf16"] = (torch.arange(4, dtype=torch.float32) * 0.5).to(torch.bfloat16)
    d["position_ids"] = torch.arange(5, dtype=torch.int64).reshape(1, 5)
    big = torch.arange(10, dtype=torch.float32)
    d["view_tail"] = big[4:8]  # shares a storage, offset 4 elements
    d["view_head"] = big[0:4]
    d["scalar"] = torch.tensor(2.0)
    return d


class Evil:
    def __init__(self, fn, arg):
        self.fn, self.arg = fn, arg

    def __reduce__(self):
        return (self.fn, (self.arg,))


def main():
    torch.save(base_dict(), out("tiny.pt"))
    torch.save({"state_dict": base_dict(), "global_step": 123, "epoch": 4}, out("nested.ckpt"))
    x = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    torch.save({"t": x.t(), "ok": x}, out("noncontig.pt"))
    torch.save({"w": torch.ones(2)}, out("legacy.pt"), _use_new_zipfile_serialization=False)
    torch.save({"w": torch.ones(2), "pwn": Evil(os.system, "touch " + MARKER)}, out("evil_system.pt"))
    torch.save({"w": torch.ones(2), "pwn": Evil(eval, "__import__('os').system('touch %s')" % MARKER)},
               out("evil_eval.pt"))
    # Truncated: a valid checkpoint cut short (its zip directory is gone).
    buf = io.BytesIO()
    torch.save(base_dict(), buf)
    data = buf.getvalue()
    with open(out("truncated.pt"), "wb") as f:
        f.write(data[: len(data) * 2 // 3])
    # The same archive re-zipped with deflate: storages become in-memory sources.
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out("deflated.pt"), "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info.filename))
    # A storage entry removed: the pickle names a storage the zip lacks.
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out("missing_storage.pt"), "w") as dst:
        names = [i.filename for i in src.infolist()]
        victim = [n for n in names if "/data/" in n][0]
        for n in names:
            if n != victim:
                dst.writestr(n, src.read(n))
    for n in sorted(os.listdir(HERE)):
        if not n.endswith(".py"):
            print(f"{n:24s} {os.path.getsize(out(n)):7d} bytes")


if __name__ == "__main__":
    main()
