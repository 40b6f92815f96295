"""The course's bilingual glossary (English ↔ 中文): one table, the single source of docs/glossary.md.

    python -m minipeft.lab.glossary            write docs/glossary.md from the table below
    python -m minipeft.lab.glossary --check    exit 1 if docs/glossary.md is not what the table renders

Each row: the English term, the Chinese term, the chapter that introduces it, the symbol the course writes for it
(d, m, r, α, n, L ... as in every chapter; "" when there is none), and optionally a regular expression that finds
the term in a chapter's English text when its plain spelling does not (plurals, abbreviations, spelling variants).
A chapter without its notebook in course/ is planned: its terms appear in no written chapter yet. tests/test_bilingual.py checks the
chapter column against the chapters' own text (a term is introduced where it is first used, not earlier or later),
and that docs/glossary.md is rendered from this table.

The Chinese terms are the ones Chinese PEFT papers, course notes and the peft documentation use (适配器, 低秩适配,
前缀调优, 软提示 ...); where two are common, the second follows a slash.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

GLOSSARY_MD = Path(__file__).resolve().parents[3] / "docs" / "glossary.md"
COURSE = Path(__file__).resolve().parents[3] / "course"   # lib/minipeft/lab/ -> the repository's course/

# English | 中文 | chapter | symbol | match (a regular expression, case-insensitive; empty: the English term itself)
_TABLE = r"""
adaptation | 适配 | 00 | | \badaptation\b
task-agnostic | 任务无关 | 00 | |
pre-trained language model | 预训练语言模型 | 00 | θ_LM | pre-?trained (language )?model
downstream task | 下游任务 | 00 | | \btasks?\b
adaptation parameters | 适配参数 | 00 | Γ, γ | \\Gamma
task loss | 任务损失 | 00 | ℓ_task | \\ell_\{?\\text\{task\}
probing | 探测 / 探针法 | 00 | | \bprob(e|ing)\b
linear probe | 线性探针 | 00 | | linear probe
full fine-tuning | 全量微调 | 00 | | full fine-tuning
lightweight fine-tuning | 轻量级微调 | 00 | | lightweight fine-tuning
parameter-efficient fine-tuning (PEFT) | 参数高效微调 | 00 | | \bPEFT\b|parameter-efficient fine-tuning
trainable parameters | 可训练参数 | 00 | | trainable param
frozen (to freeze) | 冻结 | 00 | | \bfr(o|ee)zen?\b
backbone | 主干模型 | 00 | | \bbackbones?\b
encoder | 编码器 | 00 | | \bencoders?\b
hidden size | 隐藏维度 | 00 | d | hidden size
classification head | 分类头 | 00 | | \bheads?\b
mean pooling | 平均池化 | 00 | m_t | mean[- ]pool
[CLS] token | [CLS] 标记 | 00 | | \bCLS\b
pooler | 池化层 | 00 | | \bpooler\b
cross-entropy | 交叉熵 | 00 | | cross-entropy
token | 词元 / token | 00 | T | \btokens?\b
padding | 填充 | 00 | | \bpadd(ing|ed)\b
epoch | 轮次 (epoch) | 00 | | \bepochs?\b
storage ledger | 存储账本 | 00 | N, P, f | storage ledger
warm-up | 预热阶段 | 00 | t_i | warm-up
reference run | 参考运行 | 00 | | reference runs?
live run | 现场运行 | 00 | | \blive\b
quick mode | 快速模式 | 00 | QUICK | quick mode
random seed | 随机种子 | 00 | SEED | \bseeds?\b
95 % interval | 95 % 置信区间 | 00 | | 95 %|\binterval\b
paired comparison | 配对比较 | 01 | | \bpaired\b
verdict (reproduces / the opposite / not significant at this scale) | 结论（复现 / 相反 / 在此规模下不显著） | 01 | | \bverdicts?\b
majority class | 多数类 | 01 | | majority class
adapter | 适配器 | 01 | | \badapters?\b
bottleneck adapter | 瓶颈适配器 | 01 | | bottleneck adapter
bottleneck dimension | 瓶颈维度 | 01 | m | \bbottleneck\b
down-projection | 下投影 | 01 | W_down | W_\{?\\text\{down\}|`down`
up-projection | 上投影 | 01 | W_up | W_\{?\\text\{up\}|`up`
nonlinearity | 非线性激活函数 | 01 | f | nonlinear
residual connection | 残差连接 | 01 | | \bresidual\b
near-identity initialisation | 近恒等初始化 | 01 | | near-identity
layer normalisation | 层归一化 | 01 | | LayerNorm|layer norm
feed-forward network (FFN) | 前馈网络 | 01 | d_ff | feed-forward|\bFFN\b
sequential (serial) adapter | 串行适配器 | 01 | | \bHoulsby\b.*adapter|sequential adapter
parallel adapter | 并行适配器 | 01 | | parallel adapter
number of layers | 层数 | 01 | L | \$L\b|\bL = |number of layers
parameter budget | 参数预算 | 01 | | \bbudgets?\b
bias term | 偏置项 | 01 | b | \bbias(es)?\b
inference latency | 推理延迟 | 02 | | \blatency\b
low-rank adaptation (LoRA) | 低秩适配 | 02 | | \bLoRA\b(?!-style)
rank | 秩 | 02 | r | \brank\b
weight update | 权重更新量 | 02 | ΔW | \\Delta W
scaling hyper-parameter alpha | 缩放超参数 α | 02 | α, α/r | \\alpha
merge (and unmerge) | 合并（与拆分） | 02 | | \bmerg
intrinsic rank | 内在秩 | 02 | | intrinsic rank
intrinsic dimension | 内在维度 | 02 | | intrinsic dimension
query, key and value projections | 查询、键、值投影矩阵 | 02 | W_q, W_k, W_v | W_q|W_v
singular value decomposition (SVD) | 奇异值分解 | 02 | U, Σ, V | \bSVD\b|singular value decomposition
singular value | 奇异值 | 02 | σ_i | singular value
singular-value spectrum | 奇异值谱 | 02 | | \bspectr(um|a)\b
truncated SVD | 截断奇异值分解 | 02 | | truncated
subspace similarity | 子空间相似度 | 02 | φ | subspace similarity
amplification factor | 放大系数 | 02 | | amplif
full rank | 满秩 | 02 | | full[- ]rank
zero added latency | 零额外推理延迟 | 02 | | zero added latency
gradient | 梯度 | 02 | | \bgradients?\b
prefix tuning | 前缀调优 | 03 | | prefix[- ]tuning
prefix | 前缀 | 03 | P_k, P_v | \bprefix(es)?\b
prefix length | 前缀长度 | 03 | n | prefix length
keys and values | 键和值 | 03 | K, V | keys and values
attention mask | 注意力掩码 | 03 | M | \bmask\b
attention mass on the prefix | 前缀注意力占比 | 03 | λ | attention mass
reparameterisation | 重参数化 | 03 | | reparameteri
embedding-only (prompt at the input only) | 仅嵌入层 | 03 | | embedding-only|embedding only
head size | 注意力头维度 | 03 | d_h | head size
grouped-query attention (GQA) | 分组查询注意力 | 03 | d_kv | grouped-query
softmax | softmax 归一化 | 03 | | softmax
discrete prompt | 离散提示 | 03 | | discrete prompt
prompt tuning | 提示调优 | 04 | | prompt tuning
soft prompt | 软提示 | 04 | P | soft prompt
prompt length | 提示长度 | 04 | n | prompt length
word embeddings | 词嵌入 | 04 | X_e | word embedding
position embeddings | 位置嵌入 | 04 | | position embedding
class-label initialisation | 类别标签初始化 | 04 | | class-label
nearest vocabulary tokens | 最近邻词表词元 | 04 | | nearest
P-tuning | P-tuning（连续提示调优） | 04 | | P-tuning
prompt encoder | 提示编码器 | 04 | | prompt encoder
bidirectional LSTM | 双向 LSTM | 04 | | bi-LSTM
multitask prompt tuning (MPT) | 多任务提示调优 | 04 | P^⋆, u_k, v_k | multitask prompt|\bMPT\b
rank-1 modulation | 秩一调制 | 04 | u_k ⊗ v_k | rank-1
knowledge distillation | 知识蒸馏 | 04 | | distill
domain | 领域 | 04 | | \bdomains?\b
element-wise product | 逐元素乘积 | 04 | ⊙ | element-wise
AdaLoRA (adaptive budget allocation) | 自适应低秩适配（自适应预算分配） | 05 | | AdaLoRA
SVD form of the update | 奇异值分解形式的更新 | 05 | P Λ Q | SVD form
orthogonality penalty | 正交正则项 | 05 | R(P, Q) | orthogonal
triplet | 三元组 | 05 | (P_i, λ_i, Q_i) | triplet
importance score | 重要性评分 | 05 | S_i | importance
sensitivity | 敏感度 | 05 | Ī | sensitivity
uncertainty | 不确定性 | 05 | Ū | uncertainty
cubic budget schedule | 三次预算调度 | 05 | b(t) | cubic
rank pattern | 秩分布 | 05 | | rank pattern|where.*budget go
Kronecker product | 克罗内克积 | 06 | ⊗ | Kronecker
Hadamard product | 哈达玛积 | 06 | ⊙ | Hadamard
vec trick | vec 技巧（向量化恒等式） | 06 | vec | vec trick
Kronecker adapter (KronA) | 克罗内克适配器 | 06 | A ⊗ B | \bKronA\b
LoHa (low-rank Hadamard product) | 低秩哈达玛积适配 | 06 | X_1Y_1ᵀ ⊙ X_2Y_2ᵀ | \bLoHa\b
LoKr (low-rank Kronecker product) | 低秩克罗内克积适配 | 06 | w_1 ⊗ w_2 | \bLoKr\b
effective rank | 有效秩 | 06 | | effective rank
federated learning | 联邦学习 | 06 | | federated
client | 客户端 | 06 | | \bclients?\b
server | 服务器 | 06 | | \bserver\b
federated averaging (FedAvg) | 联邦平均 | 06 | | FedAvg
communication cost | 通信开销 | 06 | | communication|numbers? (each client )?sen[dt]
personalisation (pFedPara) | 个性化 | 06 | W_1 ⊙ (W_2 + 1) | personali|pFedPara
IA3 (infused adapter by inhibiting and amplifying inner activations) | IA3（抑制与放大内部激活） | 07 | l_k, l_v, l_ff | \bIA3\b|\(IA\)
scaling vector | 缩放向量 | 07 | l | scaling vector
BitFit (bias-only fine-tuning) | BitFit（仅偏置微调） | 07 | | BitFit
unified view | 统一视角 | 08 | | unified view
functional form | 函数形式 | 08 | | functional form
insertion form | 插入形式 | 08 | | insertion form
modified representation | 被修改的表示 | 08 | h | modified representation
composition function | 组合函数 | 08 | | composition function
scaling factor of the modification | 修改量的缩放系数 | 08 | s | scaled (parallel adapter|PA|composition|addition)|a scaling \$s\$
gate | 门控 | 08 | λ(x) | \bgated?\b
Mix-And-Match adapter (MAM) | 混合搭配适配器 | 08 | | Mix-And-Match|\bMAM\b
Pareto front | 帕累托前沿 | 09 | | Pareto
out-of-distribution (OOD) | 分布外 | 09 | | out-of-distribution
few-shot learning | 少样本学习 | 10 | | few-shot
in-context learning (ICL) | 上下文学习 | 10 | | in-context
pattern | 模板 / 模式 | 10 | | pattern-exploiting|pattern \+ verbali
verbaliser | 标签词映射 | 10 | | verbali[sz]er
prompt-based fine-tuning | 基于提示的微调 | 10 | | prompt-based
demonstration | 示例（演示样本） | 10 | k | demonstrations?
rank classification | 排序分类 | 10 | | rank classification
unlikelihood loss | 非似然损失 | 10 | L_UL | unlikelihood
length normalisation | 长度归一化 | 10 | β | length-normali[sz]
mixed-task batch | 混合任务批次 | 11 | | mixed-task
throughput | 吞吐量 | 11 | | throughput
controlled generation | 可控生成 | 11 | | controlled generation
instruction tuning | 指令微调 | 11 | | instruction tuning
direct preference optimisation (DPO) | 直接偏好优化 | 11 | β | \bDPO\b
reward margin | 奖励差值 | 11 | | reward margin
AdapterFusion | 适配器融合 | 12 | | AdapterFusion
catastrophic forgetting | 灾难性遗忘 | 12 | | catastrophic forgetting
quantisation | 量化 | 12 | | quanti[sz]
DoRA (weight-decomposed low-rank adaptation) | 权重分解低秩适配 | 12 | | \bDoRA\b
backward transfer (BWT) | 反向迁移 | 12 | BWT | backward transfer|\bBWT\b
accuracy matrix | 准确率矩阵 | 12 | R_ij | accuracy matrix
"""


@dataclass(frozen=True)
class Term:
    en: str
    zh: str
    chapter: str     # the chapter that introduces it (or will: a planned chapter, see written())
    symbol: str      # the course's symbol, "" if none
    match: str       # a case-insensitive regular expression that finds the term in a chapter's English text

    def found_in(self, text: str) -> bool:
        return re.search(self.match, text, re.I) is not None


def _parse(table: str) -> list[Term]:
    terms = []
    for line in table.strip().splitlines():
        en, zh, chapter, symbol, match = [part.strip() for part in (line + " |").split("|", 4)]
        match = match.removesuffix("|").strip()  # the match column holds "|" itself: everything after the 4th
        terms.append(Term(en, zh, chapter, symbol, match or re.escape(en)))
    return terms


TERMS: list[Term] = _parse(_TABLE)


def markdown() -> str:
    """docs/glossary.md: one table per chapter, in the order the course introduces the terms."""
    lines = ["# Glossary · 术语表", "",
             "Every technical term of the course in English and Chinese, with the chapter that introduces it and the",
             "symbol the chapters write for it. Generated from `lib/minipeft/lab/glossary.py` by",
             "`python -m minipeft.lab.glossary`; do not edit by hand.", "",
             "课程中每个技术术语的英文与中文对照，附首次引入该术语的章节及各章使用的符号。本文件由",
             "`lib/minipeft/lab/glossary.py` 生成（`python -m minipeft.lab.glossary`），请勿手工编辑。", "",
             f"{len(TERMS)} terms · 共 {len(TERMS)} 个术语.", ""]
    for chapter in sorted({t.chapter for t in TERMS}):
        planned = "" if written(chapter) else " (planned · 计划中)"
        lines += [f"## Chapter {chapter} · 第 {chapter} 章{planned}", "",
                  "| English | 中文 | symbol · 符号 |", "|---|---|---|"]
        lines += [f"| {t.en} | {t.zh} | {_symbol(t.symbol)} |" for t in TERMS if t.chapter == chapter]
        lines.append("")
    return "\n".join(lines)


def written(chapter: str) -> bool:
    """Is chapter "NN" written (course/NN_*.ipynb exists)? A planned chapter's terms are marked so in the docs."""
    return any(COURSE.glob(f"{chapter}_*.ipynb"))


def _symbol(symbol: str) -> str:
    return f"`{symbol}`" if symbol else ""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/glossary.md is out of date")
    args = parser.parse_args(argv)
    text = markdown()
    if args.check:
        current = GLOSSARY_MD.read_text(encoding="utf-8") if GLOSSARY_MD.is_file() else ""
        if current != text:
            print(f"{GLOSSARY_MD} is out of date: run python -m minipeft.lab.glossary")
            return 1
        print(f"{GLOSSARY_MD}: up to date ({len(TERMS)} terms)")
        return 0
    GLOSSARY_MD.write_text(text, encoding="utf-8")
    print(f"wrote {GLOSSARY_MD} ({len(TERMS)} terms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
