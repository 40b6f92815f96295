"""One paper per file. Each holds the method's layer (or prompt module) and its config, and nothing else.

    adapters.py   bottleneck adapters: Houlsby, Pfeiffer, parallel (He et al.)
    lora.py       LoRA                          adalora.py   AdaLoRA (SVD form, budget allocation)
    dora.py       DoRA (magnitude ⊙ direction, the direction by LoRA)
    prefix.py     prefix tuning                 prompt.py    prompt tuning
    ptuning.py    P-tuning                      mpt.py       multitask prompt tuning
    softprompt.py the input hook that prompt tuning, P-tuning and MPT share
    ia3.py        IA3                           bitfit.py    BitFit
    kronecker.py  KronA, KronA^B(_res)          hadamard.py  LoHa / FedPara     lokr.py   LoKr
    pfedpara.py  pFedPara (W1 shared ⊙ (W2 local + 1))
    fusion.py     AdapterFusion: an attention over frozen per-task adapters (minipeft.methods.fusion)
"""
