"""What PyNvVideoCodec offers on this machine, and what our NVDEC path sees (a debugging aid for
docs/gpu-validation.md; prints only).  python3 scripts/gpu_lab/gpu_probe_nvdec.py CLIP [RGB|NATIVE]"""
from __future__ import annotations

import sys
import traceback

import av
import numpy as np


def main(clip: str, color: str = "RGB") -> None:
    import PyNvVideoCodec as nvc

    print("PyNvVideoCodec", nvc.__version__, "av", av.__version__)
    print("module:", [n for n in dir(nvc) if not n.startswith("_")])
    pd = nvc.PacketData()
    print("PacketData:", [n for n in dir(pd) if not n.startswith("_")])
    print("cudaVideoCodec:", list(getattr(nvc.cudaVideoCodec, "__members__", {})))
    print("OutputColorType:", list(getattr(nvc.OutputColorType, "__members__", {})))
    print("CreateDecoder doc:", (nvc.CreateDecoder.__doc__ or "").strip().splitlines()[:3])
    dec = nvc.CreateDecoder(gpuid=0, codec=nvc.cudaVideoCodec.H264, cudacontext=0, cudastream=0,
                            usedevicememory=True, outputColorType=getattr(nvc.OutputColorType, color))
    print("outputColorType:", color)
    container = av.open(clip)
    stream = container.streams.video[0]
    bsf = av.bitstream.BitStreamFilterContext("h264_mp4toannexb", stream)
    ptrs, held = [], []
    for i, packet in enumerate(container.demux(stream)):
        for p in bsf.filter(packet) if packet.size else []:
            data = np.frombuffer(p, np.uint8)
            pd = nvc.PacketData()
            pd.bsl_data, pd.bsl, pd.pts = int(data.ctypes.data), data.size, p.pts
            for f in dec.Decode(pd):
                if not held:
                    print("DecodedFrame:", [n for n in dir(f) if not n.startswith("__")])
                    print("frame CAI:", getattr(f, "__cuda_array_interface__", None))
                    views = f.cuda() if hasattr(f, "cuda") else None
                    print("cuda() views:", None if views is None else [v.__cuda_array_interface__ for v in views])
                    print("timestamp:", getattr(f, "timestamp", None), "format:", getattr(f, "format", None))
                cai = getattr(f, "__cuda_array_interface__", None) or f.cuda()[0].__cuda_array_interface__
                ptrs.append(cai["data"][0])
                held.append(f)
        if len(ptrs) >= 12:
            break
    print("surface pointers of 12 held frames:", [hex(p) for p in ptrs], "distinct:", len(set(ptrs)))


if __name__ == "__main__":
    try:
        main(sys.argv[1], *sys.argv[2:3])  # CLIP [RGB|NATIVE]
    except Exception:
        traceback.print_exc()
