"""Golden files for checkpoint shapes the shared fixtures lack, made by transformers in float64.

Run on a machine with torch + transformers (the GPU box). Writes <out>/<name>/{config.json,
model.safetensors, golden.safetensors} with the conventions of shared/reference/make_goldens.py:
loss = mean next-token CE with labels = input_ids, hidden_states[0] = embeddings, [i] = input of
layer i, last = after the final norm, grad.<param> for every parameter.
"""
import os, sys, json
import torch
from safetensors.torch import save_file
from transformers import (LlamaConfig, LlamaForCausalLM, OPTConfig, OPTForCausalLM,
                          PhiConfig, PhiForCausalLM, Qwen2Config, Qwen2ForCausalLM)

def cases():
    # OPT-350m style: post-LN (do_layer_norm_before=False) with project_in/project_out
    yield "opt-postln-proj", OPTForCausalLM, OPTConfig(vocab_size=200, hidden_size=48, ffn_dim=96, num_hidden_layers=3,
        num_attention_heads=4, max_position_embeddings=64, word_embed_proj_dim=32, do_layer_norm_before=False,
        activation_function="relu", dropout=0.0, attention_dropout=0.0, pad_token_id=1, bos_token_id=2, eos_token_id=2), (2, 20), 11
    # Llama with attention and MLP biases, untied head, odd sizes, a longer sequence
    yield "llama-bias", LlamaForCausalLM, LlamaConfig(vocab_size=211, hidden_size=80, intermediate_size=136,
        num_hidden_layers=3, num_attention_heads=5, num_key_value_heads=1, max_position_embeddings=96,
        rms_norm_eps=1e-6, rope_theta=20000.0, attention_bias=True, mlp_bias=True, tie_word_embeddings=False), (3, 41), 12
    # Phi with full rotary and a different head count
    yield "phi-fullrot", PhiForCausalLM, PhiConfig(vocab_size=150, hidden_size=48, intermediate_size=100,
        num_hidden_layers=2, num_attention_heads=3, max_position_embeddings=64, partial_rotary_factor=1.0,
        hidden_act="gelu_new", layer_norm_eps=1e-5, rope_theta=10000.0, resid_pdrop=0.0, embd_pdrop=0.0,
        attention_dropout=0.0, tie_word_embeddings=False), (1, 33), 13
    # Qwen2 with an untied head and 6:2 GQA
    yield "qwen2-untied", Qwen2ForCausalLM, Qwen2Config(vocab_size=190, hidden_size=72, intermediate_size=120,
        num_hidden_layers=2, num_attention_heads=6, num_key_value_heads=2, max_position_embeddings=64,
        rms_norm_eps=1e-6, rope_theta=1000000.0, tie_word_embeddings=False), (2, 29), 14

def main(out):
    for name, cls, cfg, (b, t), seed in cases():
        torch.manual_seed(seed)
        cfg._attn_implementation = "eager"
        model = cls(cfg).eval()
        with torch.no_grad():  # make biases and norm parameters non-trivial
            for n, p in model.named_parameters():
                if n.endswith("bias") or "norm" in n:
                    p.add_(0.1 * torch.randn_like(p))
        d = os.path.join(out, name)
        os.makedirs(d, exist_ok=True)
        model.save_pretrained(d, safe_serialization=True)
        m = model.double()
        g = torch.Generator().manual_seed(seed + 100)
        ids = torch.randint(3, cfg.vocab_size, (b, t), generator=g)
        o = m(input_ids=ids, labels=ids, output_hidden_states=True)
        o.loss.backward()
        hs = list(o.hidden_states)
        gold = {"input_ids": ids.to(torch.int64), "logits": o.logits.float().contiguous(),
                "loss": o.loss.detach().float().reshape(1)}
        if hs[-1].shape != hs[0].shape:  # OPT project_out: the last entry is narrower
            gold["final_hidden"] = hs.pop().float().contiguous()
        gold["hidden_states"] = torch.stack(hs).float().contiguous()
        seen = set()
        for n, p in m.named_parameters():
            if p.grad is None or id(p) in seen: continue
            seen.add(id(p)); gold["grad." + n] = p.grad.float().contiguous()
        save_file(gold, os.path.join(d, "golden.safetensors"))
        print(name, "loss", float(o.loss))

if __name__ == "__main__":
    main(sys.argv[1])
