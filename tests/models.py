"""Published model shapes the tests share (config.json of each model on Hugging Face)."""

LLAMA2_7B = dict(kind="transformer", name="llama2-7b", layers=32, d_model=4096, heads=32,
                 kv_heads=32, head_dim=128, d_ff=11008, vocab=32000, mlp="gated")
# How to Scale Your Model, inference chapter: L 40, D 5120, F = 2.7 D (13824), N = K = 40, H 128
LLAMA2_13B = dict(kind="transformer", name="llama2-13b", layers=40, d_model=5120, heads=40,
                  kv_heads=40, head_dim=128, d_ff=13824, vocab=32000, mlp="gated")
LLAMA3_70B = dict(kind="transformer", name="llama3-70b", layers=80, d_model=8192, heads=64,
                  kv_heads=8, head_dim=128, d_ff=28672, vocab=128256, mlp="gated")
