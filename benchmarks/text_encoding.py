"""Word encoding: the exact short-context path vs ``encode_text`` at full context, same run.

Encodes the vocabulary ``neuronattack analyze`` uses (the 30,000 most frequent English words) with
a random ViT-B-32 text tower two ways and prints the ratio:
- ours:     ``neuronattack.models.text_encoding.encode_texts`` (batches sorted by where each word
            pools, each cut after its longest word);
- baseline: ``model.encode_text(tokenizer(batch))`` in batches of the same size, every text padded
            to the full 77-token context (what every caller did before).

The baseline costs the same per word whatever the word (every text is 77 tokens), so on a busy
CPU it is timed on a random sample of words (``--baseline-sample``) and scaled to the full count;
the output says so. ``--baseline-sample 0`` times it on every word. Both paths are also timed on
that same sample, for a like-for-like ratio, and their largest difference is printed.

    python benchmarks/text_encoding.py                       # CPU, 1 torch thread
    python benchmarks/text_encoding.py --device cuda --baseline-sample 0 --json
"""

from __future__ import annotations

import argparse
import json
import random
import time

import torch


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def baseline(clip, words: list[str], batch: int, device: str) -> torch.Tensor:
    """``encode_text`` at full context, batch by batch, as before this path existed."""
    rows = []
    with torch.no_grad():
        for start in range(0, len(words), batch):
            tokens = clip.tokenizer(words[start : start + batch]).to(device)
            rows.append(clip.model.encode_text(tokens).float().cpu())
    return torch.cat(rows)


def timed(function, device: str):
    sync(device)
    start = time.perf_counter()
    result = function()
    sync(device)
    return time.perf_counter() - start, result


def measure(arch: str, n_words: int, sample: int, batch: int, device: str) -> dict:
    from neuronattack.models.clip import load_clip
    from neuronattack.models.text_encoding import encode_texts, short_context_plan
    from neuronattack.neurons.vocabulary import load_vocabulary

    clip = load_clip(f"random:{arch}", device=device)
    words = list(load_vocabulary(f"common:{n_words}").words)
    plan, reason = short_context_plan(clip.model)
    sample_words = words if sample <= 0 or sample >= len(words) else random.Random(0).sample(
        words, sample)
    encode_texts(clip, words[:batch], batch)  # warm-up (allocator, kernels)
    tokenize_s, _ = timed(lambda: clip.tokenizer(words), "cpu")  # a part of both paths' time
    ours_all_s, _ = timed(lambda: encode_texts(clip, words, batch), device)
    ours_sample_s, ours_sample = timed(lambda: encode_texts(clip, sample_words, batch), device)
    base_sample_s, base_sample = timed(lambda: baseline(clip, sample_words, batch, device),
                                       device)
    base_all_s = base_sample_s * len(words) / len(sample_words)
    return {
        "arch": arch,
        "device": device,
        "torch_threads": torch.get_num_threads(),
        "words": len(words),
        "batch": batch,
        "short_context": plan is not None,
        "refusal": reason,
        "baseline_words_timed": len(sample_words),
        "baseline_scaled": len(sample_words) != len(words),
        "ours_seconds": ours_all_s,
        "baseline_seconds": base_all_s,
        "ratio": base_all_s / ours_all_s,
        "ours_sample_seconds": ours_sample_s,
        "baseline_sample_seconds": base_sample_s,
        "sample_ratio": base_sample_s / ours_sample_s,
        "max_abs_difference": float((ours_sample - base_sample).abs().max()),
        "max_abs_value": float(base_sample.abs().max()),
        "ours_words_per_second": len(words) / ours_all_s,
        "tokenize_seconds": tokenize_s,
    }


def report(row: dict) -> None:
    print(f"text encoding, random {row['arch']} text tower, {row['words']} words, batch "
          f"{row['batch']}, {row['device']}, {row['torch_threads']} torch thread(s)")
    if not row["short_context"]:
        print(f"short context refused for this tower: {row['refusal']}")
    print(f"ours (short context, all {row['words']} words): {row['ours_seconds']:.1f} s "
          f"({row['ours_words_per_second']:.0f} words/s)")
    scaled = (f"timed on a random sample of {row['baseline_words_timed']} words and scaled to "
              f"{row['words']} (its cost per word does not depend on the word)"
              if row["baseline_scaled"] else "timed on every word")
    print(f"baseline (encode_text, full 77-token context): {row['baseline_seconds']:.1f} s, "
          f"{scaled}")
    print(f"ratio baseline/ours: {row['ratio']:.1f}x (goal >= 8x)")
    print(f"same {row['baseline_words_timed']} words both ways: ours "
          f"{row['ours_sample_seconds']:.2f} s, baseline {row['baseline_sample_seconds']:.2f} s, "
          f"ratio {row['sample_ratio']:.1f}x")
    print(f"largest |ours - baseline| on those words: {row['max_abs_difference']:.1e} "
          f"(largest |value| {row['max_abs_value']:.2f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="ViT-B-32")
    parser.add_argument("--words", type=int, default=30000)
    parser.add_argument("--baseline-sample", type=int, default=1024,
                        help="words the baseline is timed on, then scaled; 0 = all")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    row = measure(args.arch, args.words, args.baseline_sample, args.batch, args.device)
    if args.json:
        print(json.dumps(row, indent=2))
    else:
        report(row)


if __name__ == "__main__":
    main()
