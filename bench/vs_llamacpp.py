#!/usr/bin/env python3
"""vs_llamacpp.py - sqz against llama.cpp on the same GGUF files, in alternating rounds.

    python3 bench/vs_llamacpp.py FILE.gguf... [--rounds 3] [--threads 2] [--prompt 512]
                                 [--gen 128] [--llama-cpp DIR] [--bench build/bench/bench_model]
                                 [--no-llama]

For each round and each file, runs llama.cpp's `llama-bench -p PROMPT -n GEN -r 1` and sqz's
`bench_model --reps 1 --warmup` (both after one untimed warm-up run; prefill of PROMPT tokens, GEN decoded tokens from an empty context -
what llama-bench's tg measures), swapping which goes first every round so that neither always
gets the cooler or quieter minute. Prints each run on stderr and one JSON object on stdout:
per file the medians over rounds of both tools' prefill and decode tokens/s, the ratios
sqz / llama.cpp (medians of the per-round ratios), sqz's decode as a share of the bandwidth
ceiling bench_model measured in the same run (copy and read bandwidth / weight bytes), and
every run's figures. Only the standard library; use Debian's /usr/bin/python3 or any python3.
Run it on an otherwise idle machine (bench/README.md).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def run_llama(llama_dir, path, a):
    cmd = [os.path.join(llama_dir, "run"), "llama-bench", "-m", path, "-t", str(a.threads),
           "-p", str(a.prompt), "-n", str(a.gen), "-r", "1", "-o", "json"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    res = {}
    for r in json.loads(out):
        if r["n_prompt"] and not r["n_gen"]:
            res["prefill_tps"] = r["avg_ts"]
        elif r["n_gen"] and not r["n_prompt"]:
            res["decode_tps"] = r["avg_ts"]
    return res


def run_sqz(bench, path, a):
    cmd = [bench, path, "--threads-list", str(a.threads), "--reps", "1", "--prompt", str(a.prompt),
           "--gen", str(a.gen), "--ppl-tokens", "0", "--bw-mib", "512", "--warmup"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    d = json.loads(out)
    r = d["runs"][0]
    bw = d["machine"]["bandwidth_gbs"]
    wb = d["weight_bytes"]
    t = str(a.threads)
    return {
        "prefill_tps": r["prefill_tps"],
        "decode_tps": r["decode_empty_tps"],
        "decode_after_prompt_tps": r["decode_tps"],
        "weight_bytes": wb,
        "copy_gbs": bw["copy"][t],
        "read_gbs": bw["read"][t],
        "decode_gbs": r["decode_empty_tps"] * wb / 1e9,
        "pct_of_copy_ceiling": 100.0 * r["decode_empty_tps"] * wb / 1e9 / bw["copy"][t],
        "pct_of_read_ceiling": 100.0 * r["decode_empty_tps"] * wb / 1e9 / bw["read"][t],
        "other_processes_cores": d.get("other_processes_cores", 0),
    }


def med(xs):
    xs = [x for x in xs if x is not None]
    return round(statistics.median(xs), 3) if xs else None


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("files", nargs="+")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--prompt", type=int, default=512)
    p.add_argument("--gen", type=int, default=128)
    p.add_argument("--llama-cpp", default=os.path.join(os.environ.get("SQZ_SHARED", os.path.join(ROOT, "..", "shared")), "tools", "llama.cpp"))
    p.add_argument("--bench", default=os.path.join(ROOT, "build", "bench", "bench_model"))
    p.add_argument("--no-llama", action="store_true", help="sqz only")
    a = p.parse_args()
    use_llama = not a.no_llama and os.path.exists(os.path.join(a.llama_cpp, "run"))
    runs = {f: {"sqz": [], "llama": []} for f in a.files}
    for rnd in range(a.rounds):
        for f in a.files:
            order = ["llama", "sqz"] if rnd % 2 == 0 else ["sqz", "llama"]
            for who in order:
                if who == "llama" and not use_llama:
                    continue
                r = run_llama(a.llama_cpp, f, a) if who == "llama" else run_sqz(a.bench, f, a)
                runs[f][who].append(r)
                print(f"round {rnd + 1} {os.path.basename(f)} {who:5s} prefill {r['prefill_tps']:8.1f} "
                      f"decode {r['decode_tps']:7.2f}" +
                      (f"  ({r['decode_gbs']:.1f} GB/s, {r['pct_of_copy_ceiling']:.0f}% of copy, "
                       f"{r['pct_of_read_ceiling']:.0f}% of read ceiling, others {r['other_processes_cores']:.2f})"
                       if who == "sqz" else ""), file=sys.stderr, flush=True)
    out = {"threads": a.threads, "prompt": a.prompt, "gen": a.gen, "rounds": a.rounds, "files": {}}
    for f in a.files:
        s, l = runs[f]["sqz"], runs[f]["llama"]
        e = {
            "sqz": {k: med([r[k] for r in s]) for k in s[0]},
        }
        if l:
            e["llama_cpp"] = {k: med([r.get(k) for r in l]) for k in ("prefill_tps", "decode_tps")}
            e["ratio_sqz_over_llama_cpp"] = {
                k: med([rs[k] / rl[k] for rs, rl in zip(s, l) if rl.get(k)]) for k in ("prefill_tps", "decode_tps")}
        e["runs"] = runs[f]
        out["files"][os.path.basename(f)] = e
    json.dump(out, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
