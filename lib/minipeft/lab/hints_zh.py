"""The exercises' hints in Chinese: each public check's English hint (its `failure_message` in solutions/) with its
Chinese twin, keyed by the English text itself.

A key is the hint exactly as the solution notebook writes it, so an English hint that changes no longer finds its old
translation: the student then reads the new English hint (never a stale Chinese one), and tests/test_bilingual.py
fails until the twin follows. Numbers, code and formulas are the English ones, character for character.
"""

ZH = {
    # 00_adaptation q1
    'mean_pool must return a (B, d) tensor: reduce over the token axis (dim 1), not over the batch or the features. An error about the sizes (B, T) and (B, T, d) means the mask needs a feature axis to multiply the states: mask.unsqueeze(-1).':
        'mean_pool 必须返回形状为 (B, d) 的张量：在词元维（dim 1）上归约，而不是在批次或特征维上。如果报错提到尺寸 (B, T) 和 (B, T, d)，说明掩码需要增加一个特征维才能与隐藏状态相乘：mask.unsqueeze(-1)。',
    'Padding is leaking in: with mask [1, 1, 0], the padded token must not count. Multiply by the mask and divide by the number of REAL tokens (mask.sum), not by T.':
        '填充位置混进来了：当 mask 为 [1, 1, 0] 时，被填充的词元不能计入。先乘以掩码，再除以真实词元的个数（mask.sum），而不是除以 T。',
    # 00_adaptation q2
    'probe_parameters(d, C) must return a whole number (an int), e.g. d * C + ... for a Linear(d, C).':
        'probe_parameters(d, C) 必须返回一个整数（int），例如 nn.Linear(d, C) 的 d * C + ...。',
    'You counted the weight matrix only: an nn.Linear(d, C) also has a bias, one number per class.':
        '你只数了权重矩阵：nn.Linear(d, C) 还有偏置，每个类别一个数。',
    'One bias per INPUT feature? A Linear(d, C) adds its bias to the C outputs: one bias per class.':
        '每个输入特征一个偏置？Linear(d, C) 的偏置加在 C 个输出上：每个类别一个偏置。',
    'probe_parameters(10, 3) differs from what torch counts for nn.Linear(10, 3): a (C, d) weight plus a (C,) bias.':
        'probe_parameters(10, 3) 与 torch 对 nn.Linear(10, 3) 的计数不同：一个 (C, d) 的权重加一个 (C,) 的偏置。',
    "minilm_probe should be probe_parameters for MiniLM's width d = 384 and the C = 2 classes of Rotten Tomatoes (use your function).":
        'minilm_probe 应当是 MiniLM 宽度 d = 384、Rotten Tomatoes 的 C = 2 个类别时的 probe_parameters（用你写的函数来算）。',
    # 00_adaptation q3
    'Full fine-tuning stores one whole copy per task: n_tasks x n_params x bytes_per_param bytes. Did you forget bytes_per_param (2 bytes for fp16), or divide by 2**30 instead of 1e9 (1 GB = 1e9 bytes here)?':
        '全量微调为每个任务存一整份副本：n_tasks x n_params x bytes_per_param 字节。是不是忘了乘 bytes_per_param（fp16 为 2 字节），或者除以了 2**30 而不是 1e9（这里 1 GB = 1e9 字节）？',
    'PEFT storage is far too small: the adapted models still need the frozen backbone (n_params numbers), stored once, on top of fraction * n_params per task.':
        'PEFT 的存储量小得离谱：适配后的模型仍然需要冻结的主干模型（n_params 个数），它只存一次，另外每个任务再加 fraction * n_params 个数。',
    'PEFT storage is too large: the frozen backbone is shared by every task, so it is stored ONCE, not once per task; each task adds only fraction * n_params numbers.':
        'PEFT 的存储量太大：冻结的主干模型被所有任务共享，所以只存一次，而不是每个任务一次；每个任务只增加 fraction * n_params 个数。',
    'PEFT storage is close but wrong: (backbone once + fraction * n_params per task) x bytes_per_param, in units of 1e9 bytes.':
        'PEFT 的存储量接近但不对：(主干模型一次 + 每个任务 fraction * n_params) x bytes_per_param，以 1e9 字节为单位。',
    # 00_adaptation q4
    'probe_accuracy must be a plain float in [0, 1] (use .item() on a 0-d tensor), e.g. the fraction of correct predictions.':
        'probe_accuracy 必须是 [0, 1] 之间的普通 float（对 0 维张量用 .item()），例如预测正确的比例。',
    'The probe does not beat the majority class by 3 points (a correct probe does by 7 to 13 points with seeds 0-9). Did you train on the TRAIN features, with the labels in the same order as the texts, and evaluate on the TEST features?':
        '探针没有比多数类高出 3 个百分点（正确的探针在种子 0-9 下高出 7 到 13 个百分点）。你是否在训练集特征上训练、标签顺序与文本一致，并在测试集特征上评估？',
    # 01_adapters q1
    "Wrong shapes: the bottleneck compresses the HIDDEN axis d (the last one), not the tokens. down = nn.Linear(d, m) (weight (m, d)) and up = nn.Linear(m, d) (weight (d, m)); the output has the input's shape (B, T, d).":
        '形状不对：瓶颈压缩的是隐藏维 d（最后一维），而不是词元维。down = nn.Linear(d, m)（权重 (m, d)），up = nn.Linear(m, d)（权重 (d, m)）；输出与输入形状相同 (B, T, d)。',
    'Output changed at init: is up zero? Near-identity init sets up.weight AND up.bias to 0, so the adapter returns h exactly at step 0 (and check that you add h: the module returns h + delta).':
        '初始化时输出变了：up 是零吗？近恒等初始化把 up.weight 和 up.bias 都设为 0，这样适配器在第 0 步恰好返回 h（也检查一下你是否加上了 h：模块返回 h + delta）。',
    'down.weight must be random, N(0, init_std^2), with a zero bias: if down were 0 too, up would get no gradient (relu(0) = 0) and the adapter could never learn.':
        'down.weight 必须随机初始化，服从 N(0, init_std^2)，偏置为零：如果 down 也是 0，up 就得不到梯度（relu(0) = 0），适配器永远学不动。',
    'With all its weights set to 0 the adapter must return h unchanged: did you forget the residual (+ h)?':
        '当所有权重都设为 0 时，适配器必须原样返回 h：你是不是忘了残差（+ h）？',
    'With random weights the output is not h + up(relu(down(h))): the nonlinearity goes BETWEEN the projections (inside the bottleneck), not after up; and h is added once, after up.':
        '权重随机时输出不等于 h + up(relu(down(h)))：非线性激活放在两个投影之间（瓶颈内部），而不是 up 之后；h 只在 up 之后加一次。',
    # 01_adapters q2
    'adapter_parameters must return a whole number (an int).':
        'adapter_parameters 必须返回一个整数（int）。',
    'Too few: an adapter has TWO projection matrices, down (m x d) and up (d x m).':
        '太少了：适配器有两个投影矩阵，down (m x d) 和 up (d x m)。',
    'adapter_parameters(16, 4) differs from what torch counts for nn.Linear(16, 4) + nn.Linear(4, 16): did you forget the biases (down has m of them, up has d)?':
        'adapter_parameters(16, 4) 与 torch 对 nn.Linear(16, 4) + nn.Linear(4, 16) 的计数不同：是不是忘了偏置（down 有 m 个，up 有 d 个）？',
    'Houlsby puts TWO adapters in every layer (after attention and after the feed-forward block): multiply your per-adapter count by 2 * n_layers.':
        'Houlsby 在每一层放两个适配器（注意力之后和前馈块之后）：把单个适配器的参数量乘以 2 * n_layers。',
    'Pfeiffer puts ONE adapter in every layer (after the feed-forward block only): multiply your per-adapter count by n_layers.':
        'Pfeiffer 在每一层放一个适配器（只在前馈块之后）：把单个适配器的参数量乘以 n_layers。',
    'minilm_houlsby_64 should be your model_adapter_parameters for MiniLM: d = 384, m = 64, 6 layers, kind "houlsby".':
        'minilm_houlsby_64 应当是你的 model_adapter_parameters 在 MiniLM 上的结果：d = 384，m = 64，6 层，kind "houlsby"。',
    # 01_adapters q3
    'Answer with True or False (booleans, not strings, not ...) for each of down_weight_grad, down_bias_grad, up_weight_grad and up_bias_grad.':
        '对 down_weight_grad、down_bias_grad、up_weight_grad 和 up_bias_grad 各回答 True 或 False（布尔值，不是字符串，也不是 ...）。',
    'Not every parameter learns at step 0. Follow the chain rule from the loss back to each parameter: which gradients must pass THROUGH W_up, and what is W_up at step 0?':
        '并不是每个参数在第 0 步都会学习。沿链式法则从损失反推到每个参数：哪些梯度必须穿过 W_up？第 0 步时 W_up 是什么？',
    "Something does learn at step 0: an adapter that is the identity at init still has gradients. Write each parameter's gradient with the chain rule and check which of its factors is zero at step 0.":
        '第 0 步确实有参数在学习：初始化为恒等映射的适配器仍然有梯度。用链式法则写出每个参数的梯度，看看哪个因子在第 0 步为零。',
    'Your answer lets a gradient through a matrix that is zero at step 0. For each parameter, list the matrices its gradient passes through on the way back from the loss: which of them is zero at init?':
        '你的答案让梯度穿过了一个在第 0 步为零的矩阵。对每个参数，列出它的梯度从损失传回来时经过的矩阵：其中哪个在初始化时为零？',
    'Weight and bias of the same projection get their gradient through the same path: they are both zero or both non-zero at step 0.':
        '同一个投影的权重和偏置经由同一条路径得到梯度：在第 0 步它们要么都为零，要么都不为零。',
    'Not quite: work out each gradient with the chain rule (the answer is checked without showing it).':
        '还不对：用链式法则逐个推导每个梯度（检查时不会显示答案）。',
    # 01_adapters q4
    'identity_error must return a plain float (use .abs().max().item()), and errors must map each std in STDS to it.':
        'identity_error 必须返回普通 float（用 .abs().max().item()），errors 必须把 STDS 中的每个 std 映射到它。',
    'With zero_up=True the adapted network IS the pre-trained one: the error must be exactly 0. Did you compare last_hidden_state with `reference`, on a fresh deepcopy of the encoder, with the config you were given?':
        'zero_up=True 时适配后的网络就是预训练网络：误差必须恰好为 0。你是否把 last_hidden_state 与 `reference` 比较、使用编码器的一个新的 deepcopy，并使用给定的配置？',
    "Houlsby's init gave an error of exactly 0: that is minipeft's default (up = 0). Pass zero_up=False to AdapterConfig so that up is random too.":
        'Houlsby 的初始化给出的误差恰好为 0：那是 minipeft 的默认设置（up = 0）。给 AdapterConfig 传入 zero_up=False，让 up 也随机初始化。',
    'The error barely changes across sigmas 1e-4 ... 1e-1 (it should grow by orders of magnitude): pass init_std=std to AdapterConfig, and inject into a fresh copy each time.':
        '在 sigma 从 1e-4 到 1e-1 的范围内误差几乎不变（它应当增长好几个数量级）：给 AdapterConfig 传入 init_std=std，并且每次都注入到一个新的副本中。',
    # 02_lora q1
    'A must be an nn.Parameter of shape (r, in) = (3, 6) and B one of shape (out, r) = (10, 3) for nn.Linear(6, 10), r = 3: did you transpose A or B?':
        '对 nn.Linear(6, 10)、r = 3，A 必须是形状为 (r, in) = (3, 6) 的 nn.Parameter，B 必须是形状为 (out, r) = (10, 3) 的 nn.Parameter：你是不是把 A 或 B 转置了？',
    'Output changed at init: is B zero? LoRA starts from ΔW = BA = 0, so the wrapped layer must equal the base layer before training.':
        '初始化时输出变了：B 是零吗？LoRA 从 ΔW = BA = 0 出发，所以训练前包装后的层必须与基础层完全相同。',
    'A is all zeros: with A = 0 and B = 0 no gradient ever reaches B (∂L/∂B ∝ A·x). Initialise A randomly and only B at zero.':
        'A 全为零：A = 0 且 B = 0 时，梯度永远到不了 B（∂L/∂B ∝ A·x）。A 要随机初始化，只有 B 初始化为零。',
    'forward must return shape (..., out): x (..., in) → x Aᵀ (..., r) → x Aᵀ Bᵀ (..., out). Check the transposes in forward.':
        'forward 必须返回形状 (..., out)：x (..., in) → x Aᵀ (..., r) → x Aᵀ Bᵀ (..., out)。检查 forward 中的转置。',
    'The LoRA branch is not scaled by α/r (= 6/3 = 2 here): is the α/r scaling missing, or inverted (r/α)?':
        'LoRA 分支没有乘以 α/r（这里 = 6/3 = 2）：是漏了 α/r 缩放，还是写反了（r/α）？',
    # 02_lora q2
    "ΔW must have W0's shape (out, in) = (7, 5): it is B @ A (B is (out, r), A is (r, in)), not A @ B.":
        'ΔW 必须与 W0 形状相同 (out, in) = (7, 5)：它是 B @ A（B 为 (out, r)，A 为 (r, in)），不是 A @ B。',
    "The merged weight does not reproduce the LoRA layer's output: did merge forget the α/r scaling? W = W0 + (α/r)·B·A (α/r = 4 here).":
        '合并后的权重复现不了 LoRA 层的输出：merge 是不是漏了 α/r 缩放？W = W0 + (α/r)·B·A（这里 α/r = 4）。',
    'unmerge did not give W0 back (or W0 was modified in place): subtract exactly the ΔW that merge added, with the same α/r, and return new tensors.':
        'unmerge 没有还原出 W0（或者 W0 被原地修改了）：减去的必须恰好是 merge 加上的 ΔW，使用相同的 α/r，并返回新的张量。',
    # 02_lora q3
    'lora_parameters must return a whole number (an int).':
        'lora_parameters 必须返回一个整数（int）。',
    "lora_parameters(6, 10, 3) differs from what minipeft's LoRALinear(nn.Linear(6, 10), r=3) trains. LoRA trains A (r x in) and B (out x r) only: not r*in*out, no bias, and in != out in general.":
        'lora_parameters(6, 10, 3) 与 minipeft 的 LoRALinear(nn.Linear(6, 10), r=3) 所训练的参数量不同。LoRA 只训练 A (r x in) 和 B (out x r)：不是 r*in*out，没有偏置，而且一般 in != out。',
    "Your prediction differs from the measured count: multiply the per-matrix count by 4 matrices AND by MiniLM's 6 layers (r = 2, in = out = 384).":
        '你的预测与实测计数不同：把单个矩阵的参数量乘以 4 个矩阵，再乘以 MiniLM 的 6 层（r = 2，in = out = 384）。',
    'At an equal budget, W_q + W_v (2 matrices per layer) need twice the rank of all four (4 matrices per layer): 6 layers x 2 matrices at rank r_equal_budget_qv must train as many numbers as the four at r = 2.':
        '在相同预算下，W_q + W_v（每层 2 个矩阵）需要的秩是四个矩阵都适配（每层 4 个矩阵）时的两倍：6 层 x 2 个矩阵、秩为 r_equal_budget_qv 时训练的数值个数，必须与四个矩阵、r = 2 时一样多。',
    # 02_lora q4
    "lora_acc and top1_energy must be plain floats in [0, 1] (use float(...) or .item()): the accuracy from fit's result, and the MEAN over layers of each layer's energy share (a sum over 12 layers can exceed 1).":
        'lora_acc 和 top1_energy 必须是 [0, 1] 之间的普通 float（用 float(...) 或 .item()）：前者是 fit 结果中的准确率，后者是各层能量占比在所有层上的平均值（对 12 层求和可能超过 1）。',
    "The model should carry 12 LoRA layers of rank 8 (query and value in each of MiniLM's 6 layers), injected BEFORE fit, and fit should have run config.max_steps steps; lora_acc is fit's result.accuracy.":
        '模型应当带有 12 个秩为 8 的 LoRA 层（MiniLM 6 层中每层的 query 和 value），在 fit 之前注入，且 fit 应当跑满 config.max_steps 步；lora_acc 就是 fit 的 result.accuracy。',
    'The classifier head is frozen: a fresh head is random, so it must train with LoRA. Inject with modules_to_save=["head"].':
        '分类头被冻结了：新建的分类头是随机的，所以它必须和 LoRA 一起训练。注入时使用 modules_to_save=["head"]。',
    "You measured A, not the update: the question is about Delta W = B A, each layer's delta_weight().":
        '你测量的是 A，而不是更新量：问题问的是 Delta W = B A，即每层的 delta_weight()。',
    'top1_energy is (almost) 1: you kept all r directions. The share of the TOP direction is lowrank.energy(delta, 1), i.e. k = 1.':
        'top1_energy（几乎）等于 1：你保留了全部 r 个方向。最主要方向的占比是 lowrank.energy(delta, 1)，即 k = 1。',
    "top1_energy is at or below an even share (1/8): take the energy of the TOP direction only (k = 1) of each trained layer's delta_weight(), after fit.":
        'top1_energy 不超过平均占比（1/8）：在 fit 之后，对每个训练过的层的 delta_weight() 只取最主要方向（k = 1）的能量。',
    # 03_prefix q1
    'prefix_attention must run and return (B, H, T, d_h). An error or a wrong shape usually means: the prefix was concatenated on the wrong axis (it goes on the SEQUENCE axis, dim 2, of k and v, not on batch or heads), the (B, T) mask was not extended to (B, n+T), or the prefix was not expanded over the batch (p_k.expand(B, -1, -1, -1)).':
        'prefix_attention 必须能运行并返回 (B, H, T, d_h)。报错或形状不对通常意味着：前缀拼接在了错误的维度上（它应拼接在 k 和 v 的序列维 dim 2 上，而不是批次维或注意力头维），(B, T) 的掩码没有扩展成 (B, n+T)，或者前缀没有沿批次扩展（p_k.expand(B, -1, -1, -1)）。',
    'The output has more rows than the input has tokens: the prefix was added to the QUERIES. The prefix has keys and values only; q stays (B, H, T, d_h), so the output keeps T rows.':
        '输出的行数比输入的词元数多：前缀被加到了查询上。前缀只有键和值；q 保持 (B, H, T, d_h)，所以输出仍是 T 行。',
    'It works for a batch of 1 but not for a batch of 3: the prefix (H, n, d_h) is shared by every row. Expand it over the batch to (B, H, n, d_h) before concatenating, e.g. p_k.expand(B, -1, -1, -1).':
        '批次大小为 1 时能运行，为 3 时不行：前缀 (H, n, d_h) 由每一行共享。拼接前把它沿批次扩展成 (B, H, n, d_h)，例如 p_k.expand(B, -1, -1, -1)。',
    "Without a prefix (n = 0) your layer must be plain attention, and it differs from torch's scaled_dot_product_attention: are the scores divided by sqrt(d_h)? Is the softmax over the KEYS (the last axis)?":
        '没有前缀（n = 0）时，你的层必须就是普通注意力，但它与 torch 的 scaled_dot_product_attention 结果不同：分数是否除以了 sqrt(d_h)？softmax 是否作用在键上（最后一维）？',
    'The prefix has no effect: the output equals attention WITHOUT the prefix, so the prefix is masked out. Its n mask columns must be visible: ones in a keep-mask ([ones(B, n) | mask]), zeros in an additive mask, never zeros/-inf.':
        '前缀没有任何作用：输出等于不带前缀的注意力，说明前缀被掩码遮住了。它的 n 个掩码列必须可见：在保留掩码中为 1（[ones(B, n) | mask]），在加性掩码中为 0，绝不能是 zeros/-inf。',
    'Padding is leaking in (or the mask is in the wrong place): changing the key/value of a PADDING token changed the output. Extend the mask by putting the n prefix columns FIRST and the (B, T) mask after them: [ones(B, n) | mask], matching [p_k ; k].':
        '填充位置混进来了（或者掩码放错了位置）：改变一个填充词元的键/值改变了输出。扩展掩码时把 n 个前缀列放在前面，(B, T) 掩码跟在后面：[ones(B, n) | mask]，与 [p_k ; k] 对齐。',
    # 03_prefix q2
    'prefix_parameters must return a whole number (an int).':
        'prefix_parameters 必须返回一个整数（int）。',
    'prefix_parameters(L=2, n=3, d_kv=32) differs from the prefix minipeft builds in a 2-layer model of width 32 (tiny_encoder). Half of it? Every slot has a key AND a value (factor 2). L times too small? There is a prefix in EVERY layer.':
        'prefix_parameters(L=2, n=3, d_kv=32) 与 minipeft 在一个 2 层、宽度 32 的模型（tiny_encoder）中构建的前缀不一致。只有一半？每个位置都有一个键和一个值（因子 2）。小了 L 倍？每一层都有前缀。',
    'minilm should be your prefix_parameters for MiniLM: 6 layers, n = 10, keys and values of size 384.':
        'minilm 应当是你的 prefix_parameters 在 MiniLM 上的结果：6 层，n = 10，键和值的大小为 384。',
    'smollm2 is wrong. SmolLM2 uses grouped-query attention: the prefix stores keys and values of the KEY/VALUE heads only, kv_heads x head_dim numbers per slot, not the model width d.':
        'smollm2 不对。SmolLM2 使用分组查询注意力：前缀只存储键/值头的键和值，每个位置 kv_heads x head_dim 个数，而不是模型宽度 d。',
    "mlp_parameters(L=2, n=5, d_kv=32, h=7) differs from what minipeft trains with PrefixConfig(length=5, projection_hidden=7). Count every piece: the embedding P' (n x d_kv), Linear(d_kv, h) WITH its bias, Linear(h, L*2*d_kv) WITH its bias (2: keys and values).":
        "mlp_parameters(L=2, n=5, d_kv=32, h=7) 与 minipeft 用 PrefixConfig(length=5, projection_hidden=7) 训练的参数量不同。把每一部分都算上：嵌入 P' (n x d_kv)、带偏置的 Linear(d_kv, h)、带偏置的 Linear(h, L*2*d_kv)（2：键和值）。",
    # 03_prefix q3
    'lam must be a float between 0 and 1: the share of the softmax weight on the prefix slots.':
        'lam 必须是 0 到 1 之间的 float：softmax 权重落在前缀位置上的占比。',
    'You counted the padding positions: padded keys are masked out (-inf), so they get no weight. Only the n prefix slots and the REAL tokens share the softmax.':
        '你把填充位置也算进去了：被填充的键被掩码遮住（-inf），得不到任何权重。只有 n 个前缀位置和真实词元分享 softmax。',
    'That is a ratio, not a share: the softmax splits 1 over ALL visible keys, prefix included: lambda = (prefix weight) / (prefix weight + token weight).':
        '这是一个比值，不是占比：softmax 把总量 1 分给所有可见的键，包括前缀：lambda = (前缀权重) / (前缀权重 + 词元权重)。',
    'You computed the share of the REAL tokens (1 - lambda): lambda is the weight on the n prefix slots.':
        '你算的是真实词元的占比（1 - lambda）：lambda 是落在 n 个前缀位置上的权重。',
    'Not the share on the prefix: with every score 0, each visible key gets the same weight. Count the visible keys (prefix slots + real tokens) and the prefix slots among them. (The check does not show the expected value.)':
        '这不是前缀上的占比：当所有分数都为 0 时，每个可见的键得到相同的权重。数一数可见的键（前缀位置 + 真实词元）以及其中的前缀位置。（检查时不会显示期望值。）',
    # 03_prefix q4
    'masses must map each n in (1, 10, 50) to a float in [0, 1]: the .mean().item() of prefix_attention_mass(model, **batch).':
        'masses 必须把 (1, 10, 50) 中的每个 n 映射到 [0, 1] 之间的一个 float：prefix_attention_mass(model, **batch) 的 .mean().item()。',
    'The mass should grow with n: more visible slots share the softmax. Did you inject a NEW PrefixConfig(length=n) into a fresh copy of the encoder for every n (not the same model each time)?':
        '注意力质量应当随 n 增大：更多可见的位置分享 softmax。你是否对每个 n 都把一个新的 PrefixConfig(length=n) 注入到编码器的新副本中（而不是每次都用同一个模型）？',
    # 04_prompt q1
    'inputs_embeds must have shape (B, n+T, d) = (3, 10, 32). CONCATENATE the prompt and the word embeddings along the sequence axis (torch.cat(..., dim=1)): adding P to X (a sum) keeps only T positions. And expand P (n, d) to (B, n, d) so every row of the batch gets it.':
        'inputs_embeds 的形状必须是 (B, n+T, d) = (3, 10, 32)。沿序列维把提示和词嵌入拼接起来（torch.cat(..., dim=1)）：把 P 加到 X 上（求和）只会保留 T 个位置。还要把 P (n, d) 扩展成 (B, n, d)，让批次中的每一行都得到它。',
    'The first n positions of EVERY row must be the prompt P: PREPEND it, torch.cat([P expanded, X], dim=1), do not append it after the text.':
        '每一行的前 n 个位置必须是提示 P：把它放在前面，torch.cat([P expanded, X], dim=1)，不要追加在文本后面。',
    'The text part must be the WORD embeddings only, model.embeddings.word_embeddings(input_ids). minipeft joins P BEFORE BERT adds position and token-type embeddings and LayerNorm (the model adds them to all n+T positions itself): do not call model.embeddings(input_ids).':
        '文本部分必须只是词嵌入，model.embeddings.word_embeddings(input_ids)。minipeft 在 BERT 加上位置嵌入、词元类型嵌入和 LayerNorm 之前拼接 P（模型会自己把它们加到全部 n+T 个位置上）：不要调用 model.embeddings(input_ids)。',
    'The attention mask must be (B, n+T): n ONES in front (the prompt is always attended to), then the original mask, torch.cat([ones(B, n), attention_mask], dim=1). Returning the old (B, T) mask leaves the prompt unattended or misaligned.':
        '注意力掩码必须是 (B, n+T)：前面 n 个 1（提示始终被关注），然后是原来的掩码，torch.cat([ones(B, n), attention_mask], dim=1)。返回旧的 (B, T) 掩码会让提示得不到关注或位置错位。',
    # 04_prompt q2
    'prompt_params: prompt tuning trains only the n vectors of P, each of size d. No copy per layer (that is prefix tuning), no bias.':
        'prompt_params：提示调优只训练 P 的 n 个向量，每个大小为 d。不是每层一份（那是前缀调优），也没有偏置。',
    'prefix_params: a prefix holds n learned KEYS and n learned VALUES in EVERY one of the L layers.':
        'prefix_params：前缀在 L 层中的每一层都有 n 个可学习的键和 n 个可学习的值。',
    'mpt_params: MPT stores the shared prompt P* ONCE (n x d) plus, per task, U_k (n x r) and V_k (r x d): not a full n x d prompt per task.':
        'mpt_params：MPT 把共享提示 P* 只存一次（n x d），外加每个任务的 U_k (n x r) 和 V_k (r x d)：不是每个任务一个完整的 n x d 提示。',
    "seq_len: the prompt is not extra input the layers skip: it is prepended, so MiniLM's layers process the prompt's positions AND the snippet's. (The check does not show the expected value.)":
        'seq_len：提示不是各层跳过的额外输入：它被拼接在前面，所以 MiniLM 的各层既处理提示的位置，也处理文本片段的位置。（检查时不会显示期望值。）',
    # 04_prompt q3
    'task_prompt must return an (n, d) tensor like P*: the outer product u x v = torch.outer(u, v) is (n, d) (torch.outer(v, u) is (d, n): u and v swapped), u * v is not an outer product, and the modulation is ELEMENT-WISE (*), not a matrix product (@).':
        'task_prompt 必须返回一个和 P* 一样的 (n, d) 张量：外积 u x v = torch.outer(u, v) 是 (n, d)（torch.outer(v, u) 是 (d, n)：u 和 v 互换了），u * v 不是外积，而且调制是逐元素的（*），不是矩阵乘法（@）。',
    'With u = 1 and v = 1 the task prompt must equal P* itself: modulate by MULTIPLYING (P* o W), not by adding u x v.':
        '当 u = 1 且 v = 1 时，任务提示必须就等于 P* 本身：调制方式是相乘（P* o W），不是加上 u x v。',
    'P_k[i, j] must be P*[i, j] u[i] v[j]: u scales the ROWS (prompt positions), v the COLUMNS (features). Did you swap u and v, or use u * v instead of the outer product?':
        'P_k[i, j] 必须等于 P*[i, j] u[i] v[j]：u 缩放行（提示位置），v 缩放列（特征）。你是不是把 u 和 v 弄反了，或者用了 u * v 而不是外积？',
    # 04_prompt q4
    'shift_cos must be a dict {shift: float} with one plain float (use .item()) for each shift in SHIFTS.':
        'shift_cos 必须是一个字典 {shift: float}，SHIFTS 中的每个 shift 对应一个普通 float（用 .item()）。',
    'sentence_embeddings(0) must be the frozen encoder\'s usual sentence embedding: the last hidden states mean-pooled over the REAL tokens, train.mean_pool(hidden, batch["attention_mask"]). Averaging over every position (hidden.mean(1)) lets the padding in.':
        'sentence_embeddings(0) 必须是冻结编码器通常的句子嵌入：最后一层隐藏状态在真实词元上做平均池化，train.mean_pool(hidden, batch["attention_mask"])。对所有位置取平均（hidden.mean(1)）会把填充混进来。',
    'The cosine must FALL as the shift grows (shift 50 < shift 5 < 1). Did you pass position_ids to the encoder, starting at `shift` (not at 0)?':
        '余弦相似度必须随位移增大而下降（shift 50 < shift 5 < 1）。你是否把从 `shift` 开始（而不是从 0 开始）的 position_ids 传给了编码器？',
    # 05_adalora q1
    'triplet_scores must return one score per triplet, shape (r,) = (3,) for P (5, 3), lam (3,), Q (3, 6): average P over its ROWS (dim 0: a column of P belongs to triplet i) and Q over its COLUMNS (dim 1).':
        'triplet_scores 必须为每个三元组返回一个分数，对 P (5, 3)、lam (3,)、Q (3, 6) 而言形状是 (r,) = (3,)：P 沿行取平均（dim 0：P 的一列属于三元组 i），Q 沿列取平均（dim 1）。',
    'One step from Ī = Ū = 0 with I = 1 must give Ī = 1 − β1 = 0.15: β1 weights the OLD average and (1 − β1) the new sensitivity. Did you swap β1 and 1 − β1?':
        '从 Ī = Ū = 0 出发、I = 1 时走一步，必须得到 Ī = 1 − β1 = 0.15：β1 是旧平均值的权重，(1 − β1) 是新敏感度的权重。你是不是把 β1 和 1 − β1 弄反了？',
    'Ū is wrong: it averages |I − Ī| with the Ī you JUST updated (from 0 and I = 1: Ī = 0.15, then Ū = 0.15 · |1 − 0.15| = 0.1275), not with the old Ī.':
        'Ū 不对：它对 |I − Ī| 做平均时用的是刚刚更新过的 Ī（从 0 出发、I = 1：Ī = 0.15，于是 Ū = 0.15 · |1 − 0.15| = 0.1275），而不是旧的 Ī。',
    'The score of an entry is s = Ī · Ū (smoothed sensitivity TIMES uncertainty): with Ū = 0 every score must be 0.':
        '一个元素的分数是 s = Ī · Ū（平滑后的敏感度乘以不确定性）：Ū = 0 时每个分数都必须为 0。',
    "With every s = 1, S_i = 1 + 1 + 1 = 3: P and Q enter through their MEAN over the triplet's column / row, not their sum.":
        '当所有 s = 1 时，S_i = 1 + 1 + 1 = 3：P 和 Q 以它们在该三元组所在列 / 行上的平均值计入，而不是总和。',
    # 05_adalora q2
    'keep_mask must return a dict {name: bool tensor of shape (r,)}, one entry per matrix.':
        'keep_mask 必须返回一个字典 {name: 形状为 (r,) 的布尔张量}，每个矩阵一项。',
    'Keep EXACTLY `budget` triplets in the whole model (here 4 of 6): check the position of your threshold (off by one? > where >= is needed?).':
        '在整个模型中恰好保留 `budget` 个三元组（这里是 6 个中的 4 个）：检查你的阈值位置（差一个？该用 >= 的地方用了 >？）。',
    'You kept low scores: AdaLoRA keeps the HIGHEST scores S_i and drops (zeroes λ of) the lowest.':
        '你保留了低分：AdaLoRA 保留分数 S_i 最高的，丢弃（把 λ 置零）最低的。',
    "One threshold over the WHOLE model, not a share per matrix: when all of matrix a's scores beat matrix b's, a keeps every triplet and b none.":
        '是对整个模型用一个阈值，而不是每个矩阵各保留一定比例：当矩阵 a 的所有分数都高于矩阵 b 时，a 保留全部三元组，b 一个都不留。',
    # 05_adalora q3
    'budget must return a whole number (an int), rounded down like int(...).':
        'budget 必须返回一个整数（int），像 int(...) 那样向下取整。',
    'During the warm-up (t ≤ t_i) the budget is the full b0: no triplet is dropped before the scores mean something.':
        '预热阶段（t ≤ t_i）预算是完整的 b0：在分数有意义之前不丢弃任何三元组。',
    'After the reduction (t > T − t_f) the budget stays at b_T: the final t_f steps train a FROZEN pattern. The reduction must end at T − t_f, not at T.':
        '削减结束后（t > T − t_f）预算保持在 b_T：最后 t_f 步训练的是一个冻结的秩分布。削减必须在 T − t_f 结束，而不是在 T。',
    'The schedule is cubic and front-loaded: the budget falls FASTEST right after the warm-up, (1 − progress)³, so halfway through less than 1/8 of the cut is left. Not linear, and not b0 − (b0 − bT)·progress³.':
        '调度是三次的，并且前快后慢：预算在预热之后最快地下降，(1 − progress)³，所以进行到一半时剩下的削减量不到 1/8。不是线性的，也不是 b0 − (b0 − bT)·progress³。',
    'Round DOWN with int(...), as the library does: with b0 = 100, bT = 0, T = 4 the budget at t = 3 is 100 · (1/4)³ = 1.5625 -> 1 triplet, not 2.':
        '像库里那样用 int(...) 向下取整：b0 = 100、bT = 0、T = 4 时，t = 3 的预算是 100 · (1/4)³ = 1.5625 -> 1 个三元组，不是 2 个。',
    'kept_at_136 is not what your (checked) schedule gives at step 136 with the reference settings: b0 = 432, bT = 288, t_i = 32, t_f = 80, T = 319.':
        'kept_at_136 与你（已通过检查的）调度在参考设置下第 136 步给出的值不同：b0 = 432，bT = 288，t_i = 32，t_f = 80，T = 319。',
    # 05_adalora q4
    'adalora_trained must be a whole number (an int).':
        'adalora_trained 必须是一个整数（int）。',
    'You forgot λ: a triplet is a column of P (d_out numbers), ONE singular value λ_i and a row of Q (d_in numbers): d_out + 1 + d_in.':
        '你漏了 λ：一个三元组是 P 的一列（d_out 个数）、一个奇异值 λ_i 和 Q 的一行（d_in 个数）：d_out + 1 + d_in。',
    'AdaLoRA TRAINS all init_r = 12 triplets of every matrix (a dropped one only has λ_i = 0); target_r = 8 is the final average budget.':
        'AdaLoRA 会训练每个矩阵全部 init_r = 12 个三元组（被丢弃的只是 λ_i = 0）；target_r = 8 是最终的平均预算。',
    'The FFN matrices are not square: intermediate.dense is 384 → 1536 and output.dense 1536 → 384, and all SIX matrix types are adapted.':
        'FFN 矩阵不是方阵：intermediate.dense 是 384 → 1536，output.dense 是 1536 → 384，而且六种矩阵类型全部被适配。',
    "Count every one of MiniLM's 6 layers.":
        'MiniLM 的 6 层每一层都要算上。',
    'Not what minipeft trains: per matrix init_r · (d_in + d_out + 1), summed over the 6 matrix types and the 6 layers.':
        '与 minipeft 训练的参数量不同：每个矩阵 init_r · (d_in + d_out + 1)，对 6 种矩阵类型和 6 层求和。',
    # 06_kronecker q1
    'For A (2×3), B (4×5) and one vector x of 15 numbers the answer has a1·b1 = 8 numbers. Multiply X (a2 × b2) by A on the left and by Bᵀ (b2 × b1) on the right: A X Bᵀ.':
        '对 A (2×3)、B (4×5) 和一个含 15 个数的向量 x，结果有 a1·b1 = 8 个数。把 X (a2 × b2) 左乘 A、右乘 Bᵀ (b2 × b1)：A X Bᵀ。',
    "Wrong numbers: rows vs columns. With PyTorch's row-major reshape X = x.reshape(a2, b2), (A ⊗ B) x is A X Bᵀ flattened row by row (B X Aᵀ is the textbook form for column-stacked vec).":
        '数值不对：行与列搞反了。用 PyTorch 的行优先 reshape X = x.reshape(a2, b2) 时，(A ⊗ B) x 是把 A X Bᵀ 按行展平（B X Aᵀ 是教科书中按列堆叠 vec 时的形式）。',
    'Never build A ⊗ B (torch.kron): the vec trick applies it from the small factors alone.':
        '永远不要构造 A ⊗ B（torch.kron）：vec 技巧只用两个小因子就能作用于向量。',
    'Keep the leading dimensions (batch, tokens): x of shape (2, 3, 15) gives (2, 3, 8). Reshape with x.reshape(*x.shape[:-1], a2, b2).':
        '保留前面的维度（批次、词元）：形状为 (2, 3, 15) 的 x 得到 (2, 3, 8)。用 x.reshape(*x.shape[:-1], a2, b2) 来 reshape。',
    # 06_kronecker q2
    'loha_params is wrong: LoHa has TWO pairs of factors, (X1, Y1) and (X2, Y2), each r·(d_out + d_in) numbers.':
        'loha_params 不对：LoHa 有两对因子 (X1, Y1) 和 (X2, Y2)，每对 r·(d_out + d_in) 个数。',
    "loha_max_rank is too small: a Hadamard product MULTIPLIES ranks, rank(A ⊙ B) ≤ rank(A)·rank(B) = r·r (not 2r, LoRA's rank for the same price).":
        'loha_max_rank 太小了：哈达玛积把秩相乘，rank(A ⊙ B) ≤ rank(A)·rank(B) = r·r（不是 2r，那是同样代价下 LoRA 的秩）。',
    'No matrix has a rank above min(d_out, d_in): cap r² there (r = 30 on a 384 × 384 matrix reaches 384, not 900).':
        '任何矩阵的秩都不会超过 min(d_out, d_in)：把 r² 截断在这里（384 × 384 的矩阵上 r = 30 能达到 384，而不是 900）。',
    # 06_kronecker q3
    'lokr_max_rank must be a whole number (an int).':
        'lokr_max_rank 必须是一个整数（int）。',
    'That is the rank of w2 alone: the Kronecker product MULTIPLIES it by rank(w1), and w1 (3 × 3) has full rank once trained.':
        '这只是 w2 自己的秩：克罗内克积会把它乘以 rank(w1)，而 w1 (3 × 3) 训练后是满秩的。',
    'w2 is not full rank: with r = 48 < 128 / 2, LoKr stores w2 = w2_a w2_b (128 × 48 times 48 × 128), of rank at most r.':
        'w2 不是满秩的：r = 48 < 128 / 2 时，LoKr 存储的是 w2 = w2_a w2_b（128 × 48 乘 48 × 128），秩至多为 r。',
    "A matrix's rank is not its number of entries: w1 is 3 × 3, so rank(w1) ≤ 3, not 9.":
        '矩阵的秩不是它的元素个数：w1 是 3 × 3，所以 rank(w1) ≤ 3，而不是 9。',
    'Not the maximum rank: rank(w1 ⊗ w2) = rank(w1) · rank(w2), with w1 3 × 3 and w2 of rank r = 48.':
        '这不是最大秩：rank(w1 ⊗ w2) = rank(w1) · rank(w2)，其中 w1 为 3 × 3，w2 的秩为 r = 48。',
    # 07_scaling q1
    'For ONE block with d = 64 and d_ff = 64 the count is 64 + 64 + 64: l_k and l_v are as wide as the keys and the values (here 4 heads of 16 = 64 each), l_ff as the FFN activation, and IA3 does not scale the queries.':
        '对于 d = 64、d_ff = 64 的一个块，数量是 64 + 64 + 64：l_k 和 l_v 与键和值一样宽（这里是 4 个 16 维的头，各 64），l_ff 与 FFN 激活一样宽，而且 IA3 不缩放查询。',
    "For ONE block with d = 64 and d_ff = 256 the count is 64 + 64 + 256: l_ff is as wide as the FFN's inner activation, intermediate_size (d_ff), not hidden_size.":
        '对于 d = 64、d_ff = 256 的一个块，数量是 64 + 64 + 256：l_ff 与 FFN 的内部激活一样宽，即 intermediate_size (d_ff)，而不是 hidden_size。',
    'One set of vectors in EVERY block: multiply by num_hidden_layers (MiniLM: 6 blocks of 384 + 384 + 1536).':
        '每一个块都有一组向量：乘以 num_hidden_layers（MiniLM：6 个块，每块 384 + 384 + 1536）。',
    'Grouped-query attention: keys and values are num_key_value_heads · head_dim wide (head_dim = hidden_size / num_attention_heads), narrower than hidden_size. SmolLM2: 3 KV heads of 64 = 192.':
        '分组查询注意力：键和值的宽度是 num_key_value_heads · head_dim（head_dim = hidden_size / num_attention_heads），比 hidden_size 窄。SmolLM2：3 个 KV 头，每个 64 = 192。',
    # 07_scaling q2
    'Output scaling multiplies ROW i of W (the weights of output i) by l_i: weight * l[:, None], shape (d_out, d_in).':
        '输出缩放把 W 的第 i 行（输出 i 的权重）乘以 l_i：weight * l[:, None]，形状 (d_out, d_in)。',
    'Output scaling scales the bias too: l ⊙ (W x + b) = (diag(l) W) x + l ⊙ b.':
        '输出缩放也会缩放偏置：l ⊙ (W x + b) = (diag(l) W) x + l ⊙ b。',
    'Input scaling multiplies COLUMN j of W (the weights of input j) by l_j: weight * l[None, :], with l of shape (d_in,).':
        '输入缩放把 W 的第 j 列（输入 j 的权重）乘以 l_j：weight * l[None, :]，其中 l 的形状为 (d_in,)。',
    'Input scaling leaves the bias alone: W (l ⊙ x) + b adds b after the product, unscaled.':
        '输入缩放不改变偏置：W (l ⊙ x) + b 在乘积之后才加上 b，不做缩放。',
    'Return NEW tensors: your answer changed the weight or bias it was given (in place, e.g. mul_), which belong to the frozen base model.':
        '返回新的张量：你的答案修改了传入的权重或偏置（原地修改，例如 mul_），而它们属于冻结的基础模型。',
    # 07_scaling q3
    'bitfit_learns must be a whole number (an int).':
        'bitfit_learns 必须是一个整数（int）。',
    'You counted every bias: two kinds never receive a gradient here. Which bias does a mean-pooling head never read, and which one adds the same number to every score of an attention row?':
        '你把所有偏置都算进去了：这里有两类偏置永远收不到梯度。哪个偏置是平均池化的预测头从来不读的？哪个偏置给注意力一行中的每个分数都加上同一个数？',
    'The key biases: q·(k_j + b_k) = q·k_j + q·b_k, the same for every key j, and softmax ignores a constant added to a whole row, so ∂L/∂b_k = 0 in all 6 blocks.':
        '键的偏置：q·(k_j + b_k) = q·k_j + q·b_k，对每个键 j 都一样，而 softmax 会忽略加在整行上的常数，所以在全部 6 个块中 ∂L/∂b_k = 0。',
    "The pooler: BERT computes tanh(W_p h_CLS + b_p), but the course's head mean-pools the last hidden states and never reads it, so the loss never reaches b_p.":
        '池化层：BERT 计算 tanh(W_p h_CLS + b_p)，但本课程的预测头对最后一层隐藏状态做平均池化，从不读取它，所以损失永远传不到 b_p。',
    'The value biases do learn: the attention weights of a row sum to 1, so b_v adds itself to every attention output.':
        '值的偏置确实会学习：一行的注意力权重之和为 1，所以 b_v 会原样加到每个注意力输出上。',
    'Not the count: start from 26,112 and remove what no gradient reaches (one vector outside the blocks, one kind inside every block).':
        '数量不对：从 26,112 出发，去掉梯度到达不了的部分（块外面的一个向量，以及每个块里面的一类偏置）。',
    # 07_scaling q4
    "grads must be a dict {'query': float, 'key': float, 'value': float}: the mean of |gradient| of each bias, with .item().":
        "grads 必须是一个字典 {'query': float, 'key': float, 'value': float}：每种偏置的 |梯度| 的平均值，用 .item()。",
    "grads['query'] is 0: no gradient reached it. Call loss.backward() on the model's loss for this batch before reading .grad.":
        "grads['query'] 为 0：没有梯度到达它。读取 .grad 之前，先对这一批数据的模型损失调用 loss.backward()。",
    "grads['key'] is far too large for the key BIAS: read attention.key.bias.grad (not the query's or the value's, whose biases do reach the output).":
        "对键的偏置而言，grads['key'] 大得离谱：读取 attention.key.bias.grad（而不是查询或值的，它们的偏置确实会影响输出）。",
    'Not the gradients of the FIRST block after ONE backward pass: read model.encoder.encoder.layer[0].attention.self, and call loss.backward() exactly once (gradients add up over calls).':
        '这不是第一个块在一次反向传播后的梯度：读取 model.encoder.encoder.layer[0].attention.self，并且恰好调用一次 loss.backward()（多次调用时梯度会累加）。',
    # 08_unified q1
    'For x of shape (2, 5, 6), A (3 × 6) and B (4 × 3) the update has shape (2, 5, 4). x Aᵀ has r = 3 columns, then Bᵀ (r × d_out) gives d_out: A comes first (W_down = Aᵀ), then B (W_up = Bᵀ). Check which factor you transposed.':
        '对于形状为 (2, 5, 6) 的 x、A (3 × 6) 和 B (4 × 3)，更新量的形状是 (2, 5, 4)。x Aᵀ 有 r = 3 列，再乘 Bᵀ (r × d_out) 得到 d_out：先 A（W_down = Aᵀ），后 B（W_up = Bᵀ）。检查你转置的是哪个因子。',
    'You forgot the scaling: LoRA adds s · x Aᵀ Bᵀ with s = α/r (here 6 / 3 = 2), not x Aᵀ Bᵀ.':
        '你漏了缩放：LoRA 加的是 s · x Aᵀ Bᵀ，其中 s = α/r（这里 6 / 3 = 2），而不是 x Aᵀ Bᵀ。',
    'The scaling is upside down: s = α/r (here 6 / 3 = 2), not r/α.':
        '缩放写反了：s = α/r（这里 6 / 3 = 2），不是 r/α。',
    's = α/r: divide α by the rank r (here 6 / 3 = 2), do not use α alone.':
        's = α/r：用 α 除以秩 r（这里 6 / 3 = 2），不要只用 α。',
    "Not what LoRALinear adds to its frozen output: layer(x) − W0x = (α/r) · x Aᵀ Bᵀ, computed from x, the layer's INPUT (a parallel insertion).":
        '这不是 LoRALinear 加到冻结输出上的量：layer(x) − W0x = (α/r) · x Aᵀ Bᵀ，由 x——也就是该层的输入——计算（并行插入）。',
    # 08_unified q2
    'λ(x) is one number per query token, shape (T,): sum exp(scores) along the LAST axis, over the n prefix slots (and over the T tokens), for each query row.':
        'λ(x) 是每个查询词元一个数，形状 (T,)：对每个查询行，沿最后一维对 exp(scores) 求和，范围是 n 个前缀位置（以及 T 个词元）。',
    'The denominator of λ must hold BOTH sums, Σ_i exp(q·P_k,i) + Σ_j exp(q·k_j): without the prefix term λ is a ratio, not a share, and can exceed 1.':
        'λ 的分母必须同时包含两个和，Σ_i exp(q·P_k,i) + Σ_j exp(q·k_j)：没有前缀这一项，λ 就是比值而不是占比，可能超过 1。',
    'Multiply every score by scale = 1/√d_h before exp, as attention does.':
        '在取 exp 之前把每个分数乘以 scale = 1/√d_h，和注意力的做法一样。',
    'λ(x) is the share of the attention that falls on the prefix: the softmax over [prefix slots; tokens] of scale · q [P_k; K]ᵀ, summed over the n prefix columns.':
        'λ(x) 是落在前缀上的注意力占比：对 [前缀位置; 词元] 上的 scale · q [P_k; K]ᵀ 做 softmax，再在 n 个前缀列上求和。',
    'Compose with the gate, (1 − λ) · Attn(x) + λ · Δh: prefix tuning does not add Δh to h.':
        '用门控来组合，(1 − λ) · Attn(x) + λ · Δh：前缀调优并不是把 Δh 加到 h 上。',
    'λ weighs the PREFIX branch Δh = softmax(s q P_kᵀ) P_v, and 1 − λ the ordinary attention over the tokens.':
        'λ 加权的是前缀分支 Δh = softmax(s q P_kᵀ) P_v，1 − λ 加权的是在词元上的普通注意力。',
    'Not the head of prefix tuning, softmax(s q [P_k; K]ᵀ) [P_v; V]. Attn(x) = softmax(s q Kᵀ) V and Δh = softmax(s q P_kᵀ) P_v, each a softmax over its own columns.':
        '这不是前缀调优的注意力头 softmax(s q [P_k; K]ᵀ) [P_v; V]。Attn(x) = softmax(s q Kᵀ) V，Δh = softmax(s q P_kᵀ) P_v，各自在自己的列上做 softmax。',
    # 08_unified q3
    'ffn_lora_params and attn_rank must be whole numbers (int).':
        'ffn_lora_params 和 attn_rank 必须是整数（int）。',
    'W_in is 384 × 1536: its LoRA factors are A (r × 384) and B (1536 × r), r · (384 + 1536) numbers, not r · (384 + 384). The FFN matrices are wider than the attention ones (d_ff = 4d).':
        'W_in 是 384 × 1536：它的 LoRA 因子是 A (r × 384) 和 B (1536 × r)，共 r · (384 + 1536) 个数，而不是 r · (384 + 384)。FFN 矩阵比注意力矩阵宽（d_ff = 4d）。',
    'LoRA goes on BOTH FFN matrices, W_in and W_out: twice r · (d + d_ff) per layer.':
        'LoRA 加在 FFN 的两个矩阵 W_in 和 W_out 上：每层是 r · (d + d_ff) 的两倍。',
    'Count every one of the 6 layers, not one.':
        '6 层每一层都要算上，不是只算一层。',
    'Not the FFN count: per layer 2 matrices × r · (d_in + d_out), over 6 layers.':
        '这不是 FFN 的参数量：每层 2 个矩阵 × r · (d_in + d_out)，共 6 层。',
    'Equal rank is not an equal budget: an attention matrix (384 × 384) costs r · 768 per rank, an FFN matrix r · 1920.':
        '秩相等不等于预算相等：注意力矩阵（384 × 384）每个秩花费 r · 768，FFN 矩阵花费 r · 1920。',
    'LoRA on the attention adapts TWO matrices per layer, W_q and W_v: r · (384 + 384) each.':
        '注意力上的 LoRA 每层适配两个矩阵 W_q 和 W_v：每个 r · (384 + 384)。',
    'Not the equal-budget rank: solve 6 · 2 · r · (384 + 384) = ffn_lora_params for r.':
        '这不是预算相等时的秩：解方程 6 · 2 · r · (384 + 384) = ffn_lora_params，求 r。',
    # 08_unified q4
    "The result has the FFN output's shape, (B, T, d) = (2, 5, 32): ffn.dense maps h_inner (d_ff = 64) to d, and the adapter maps x (d = 32) to m and back to d.":
        '结果与 FFN 输出形状相同，(B, T, d) = (2, 5, 32)：ffn.dense 把 h_inner (d_ff = 64) 映射到 d，适配器把 x (d = 32) 映射到 m 再映射回 d。',
    'You forgot s: the scaled parallel adapter adds s · Δh (here s = 3), not Δh.':
        '你漏了 s：缩放并行适配器加的是 s · Δh（这里 s = 3），而不是 Δh。',
    "A PARALLEL adapter reads x, the FFN block's input, not h, the FFN's output: Δh = up(ReLU(down(x))).":
        '并行适配器读取的是 x（FFN 块的输入），而不是 h（FFN 的输出）：Δh = up(ReLU(down(x)))。',
    'Add s · Δh before the residual and the LayerNorm: LayerNorm(h + s·Δh + x), not LayerNorm(h + x) + s·Δh.':
        '在残差和 LayerNorm 之前加上 s · Δh：LayerNorm(h + s·Δh + x)，而不是 LayerNorm(h + x) + s·Δh。',
    'Keep the nonlinearity f = ReLU between down and up: without it the adapter is linear (a LoRA beside the FFN).':
        '在 down 和 up 之间保留非线性激活 f = ReLU：没有它，适配器就是线性的（相当于 FFN 旁边的一个 LoRA）。',
    "Not what the library's ParallelAdapter computes: LayerNorm(W_out h_inner + b + s · up(ReLU(down(x))) + x).":
        '与库中 ParallelAdapter 的计算结果不同：LayerNorm(W_out h_inner + b + s · up(ReLU(down(x))) + x)。',
    # 11_serving q1
    "The update has shape (B, T, d_out) = (3, 5, 6): x (B, T, d_in) times each row's A transposed (d_in, r), then its B transposed (r, d_out).":
        '更新的形状是 (B, T, d_out) = (3, 5, 6)：x (B, T, d_in) 先乘每一行自己的 A 的转置 (d_in, r)，再乘它的 B 的转置 (r, d_out)。',
    "A row routed to slot 0 is the base model: its update must be exactly 0. Gather each row's own slot, A_all[rows] with rows itself (slot 0 = the base): not rows - 1, and not one user's slot for every row.":
        '路由到槽位 0 的行就是基础模型：它的更新必须恰好为 0。为每一行收集它自己的槽位，用 rows 本身索引 A_all[rows]（槽位 0 = 基础模型）：不是 rows - 1，也不是让每一行都用同一个用户的槽位。',
    "Every row uses ITS OWN user's factors: gather A_all[rows] and B_all[rows] (shape (B, r, d_in), (B, d_out, r)), not one user's (A_all[1]) for the whole batch.":
        '每一行都使用它自己用户的因子：收集 A_all[rows] 和 B_all[rows]（形状 (B, r, d_in)、(B, d_out, r)），而不是整个批次都用一个用户的（A_all[1]）。',
    "Multiply by each row's scale s[rows] (alpha / r of that row's user), broadcast over T and d_out: s[rows][:, None, None].":
        '乘以每一行自己的缩放 s[rows]（该行用户的 alpha / r），在 T 和 d_out 上广播：s[rows][:, None, None]。',
    'Not s · (x Aᵀ) Bᵀ per row: compare with a loop over the rows, out[b] = s[rows[b]] * x[b] @ A_all[rows[b]].T @ B_all[rows[b]].T.':
        '每一行的结果不是 s · (x Aᵀ) Bᵀ：与逐行循环比较，out[b] = s[rows[b]] * x[b] @ A_all[rows[b]].T @ B_all[rows[b]].T。',
    # 11_serving q2
    "Where the policy IS the reference (the start: LoRA's B = 0) every margin is 0 and the loss is log 2 = 0.6931; return a scalar tensor (the mean over the batch).":
        '当策略就是参考模型时（开始时：LoRA 的 B = 0），每个差值都是 0，损失是 log 2 = 0.6931；返回一个标量张量（对批次取平均）。',
    'Preferring the CHOSEN response more than the reference does must LOWER the loss below log 2: the margin is (policy_w − ref_w) − (policy_l − ref_l), chosen first.':
        '比参考模型更偏好被选中（CHOSEN）的回答，必须让损失降到 log 2 以下：差值是 (policy_w − ref_w) − (policy_l − ref_l)，被选中的在前。',
    'Compare with the REFERENCE: a response the base model already likes gets no reward for that. Subtract ref_w from policy_w and ref_l from policy_l.':
        '要与参考模型（REFERENCE）比较：基础模型本来就喜欢的回答不会因此得到奖励。从 policy_w 中减去 ref_w，从 policy_l 中减去 ref_l。',
    'Multiply the margin by beta before the sigmoid: beta = 1 and beta = 0.1 must give different losses.':
        '在 sigmoid 之前把差值乘以 beta：beta = 1 和 beta = 0.1 必须给出不同的损失。',
    'The loss is − log σ(margin), averaged over the batch (the mean, not the sum, and the log of the sigmoid, not the sigmoid itself).':
        '损失是 − log σ(margin)，对批次取平均（是平均而不是求和；是 sigmoid 的对数，而不是 sigmoid 本身）。',
    # 11_serving q3
    'bank_numbers must be a whole number (an int).':
        'bank_numbers 必须是整数（int）。',
    "You left out slot 0: the base model's slot (zeros) is stacked too, so base rows can be gathered like the others: U + 1 slots.":
        '你漏掉了槽位 0：基础模型的槽位（全零）也被堆叠进去，这样基础模型的行也能像其他行一样被收集：共 U + 1 个槽位。',
    'You added the ranks (2 + 4 + 16): the stacked tensors are rectangular, every slot as wide as the LARGEST rank; a smaller rank is padded with zeros.':
        '你把秩相加了（2 + 4 + 16）：堆叠的张量是规整的矩形，每个槽位都和最大的秩一样宽；较小的秩用零填充。',
    'Count both factors: A (r, d_in) AND B (d_out, r) per slot.':
        '两个因子都要算：每个槽位有 A (r, d_in) 和 B (d_out, r)。',
    "ONE layer's q_proj, not all 30 layers.":
        '只算一层的 q_proj，不是全部 30 层。',
    'Not the count: (slots) × (the largest rank) × (d_in + d_out).':
        '数量不对：(槽位数) × (最大的秩) × (d_in + d_out)。',
    # 12_forgetting q1
    'bwt must return a Python float (wrap the result in float(...)).':
        'bwt 必须返回一个 Python float（用 float(...) 包住结果）。',
    'Forgetting must come out NEGATIVE: each earlier task at the end MINUS right after its own stage, R[T-1][j] − R[j][j], not the other way round.':
        '遗忘必须得到负数：每个较早的任务在最后的准确率减去它自己那个阶段刚结束时的准确率，即 R[T-1][j] − R[j][j]，而不是反过来。',
    'Average over the T − 1 EARLIER tasks only: the last task has no stage after its own (R[T-1][T-1] − R[T-1][T-1] is always 0), so divide by T − 1, not T.':
        '只对 T − 1 个较早的任务取平均：最后一个任务在它自己的阶段之后没有别的阶段（R[T-1][T-1] − R[T-1][T-1] 总是 0），所以除以 T − 1，而不是 T。',
    'R[i][j] is task j after stage i: the end is the LAST ROW, R[T-1][j] (every task after the last stage), not the last column R[j][T-1].':
        'R[i][j] 是第 i 个阶段之后任务 j 的准确率：最后的状态是最后一行 R[T-1][j]（最后一个阶段之后的每个任务），而不是最后一列 R[j][T-1]。',
    # 12_forgetting q2
    "W' has W0's shape (out, in) = (5, 3): B @ A is (out, r) @ (r, in), and m scales each ROW, m[:, None] (shape (out, 1)), not m[None, :].":
        "W' 与 W0 形状相同 (out, in) = (5, 3)：B @ A 是 (out, r) @ (r, in)，m 缩放的是每一行，即 m[:, None]（形状 (out, 1)），而不是 m[None, :]。",
    "Each ROW of W' must have length m_i: divide W0 + s·B A by ITS OWN row norms (norm over dim=1, keepdim=True). The typical mistakes: column norms (dim=0), or the row norms of W0 instead of W0 + s·B A.":
        "W' 的每一行长度必须是 m_i：用 W0 + s·B A 自己的行范数去除（沿 dim=1 求范数，keepdim=True）。常见错误：用了列范数（dim=0），或者用了 W0 的行范数而不是 W0 + s·B A 的。",
    'The direction is W0 + s · B A: multiply the LoRA product B @ A by s (here s = 2) before normalising.':
        '方向是 W0 + s · B A：归一化之前要把 LoRA 的乘积 B @ A 乘以 s（这里 s = 2）。',
    "At initialisation (B = 0, m = the row norms of W0) DoRA must give back W0 exactly: W' = ‖W0‖_c · W0 / ‖W0‖_c.":
        "初始化时（B = 0，m = W0 的行范数），DoRA 必须精确地还原 W0：W' = ‖W0‖_c · W0 / ‖W0‖_c。",
    # 12_forgetting q3
    "quantize_rows must return (q, scale): q a torch.int8 tensor with W's shape (out, in), scale one number per ROW, shape (out,).":
        'quantize_rows 必须返回 (q, scale)：q 是与 W 形状相同 (out, in) 的 torch.int8 张量，scale 每一行一个数，形状 (out,)。',
    'One scale per ROW (the absmax over dim=1): with one scale for the whole matrix, a row of small weights rounds to 0 (here row 0 is 1000× smaller than row 1).':
        '每一行一个缩放因子（沿 dim=1 取绝对值最大值）：整个矩阵只用一个缩放因子时，一行很小的权重会被舍入成 0（这里第 0 行比第 1 行小 1000× 倍）。',
    'The scale of row i is max_j |W_ij| / 127 (so the largest weight maps to ±127): not / 128 or / 255, and the ABSOLUTE maximum (abs before amax).':
        '第 i 行的缩放因子是 max_j |W_ij| / 127（这样最大的权重映射到 ±127）：不是 / 128 或 / 255，而且是绝对值的最大值（先 abs 再 amax）。',
    'Round to the NEAREST integer (torch.round) before .to(torch.int8): converting directly truncates toward 0, and errors grow to a whole step.':
        '在 .to(torch.int8) 之前先舍入到最近的整数（torch.round）：直接转换会向 0 截断，误差会增大到整整一个步长。',
    "dequantize_rows multiplies each ROW of q by its own scale: q.float() * scale[:, None], a float tensor of q's shape.":
        'dequantize_rows 把 q 的每一行乘以它自己的缩放因子：q.float() * scale[:, None]，得到与 q 形状相同的浮点张量。',
    # 10_fewshot q1
    'answer_score must return (B, C): one score per prompt and answer, summed over the token axis (the last one), not over the answers or the prompts.':
        'answer_score 必须返回 (B, C)：每个提示和每个答案一个分数，在词元维（最后一维）上求和，而不是在答案维或提示维上。',
    "Only the ANSWER's tokens count: multiply logp by answer_mask before summing over the tokens (dim -1). The prompt's own log-probabilities are in logp too.":
        '只有答案的词元才计入：在对词元维（dim -1）求和之前先把 logp 乘以 answer_mask。logp 里也包含提示本身各词元的对数概率。',
    "normalise=True divides each answer's sum by ITS number of answer tokens (answer_mask.sum(-1)), not by T, the padded length.":
        'normalise=True 时，每个答案的和要除以它自己的答案词元数（answer_mask.sum(-1)），而不是除以填充后的长度 T。',
    "normalise=False is the plain SUM of the answer's log-probabilities (a product of probabilities); the mean is only for normalise=True.":
        'normalise=False 时就是答案各词元对数概率的直接求和（即概率之积）；只有 normalise=True 时才取平均。',
    # 10_fewshot q2
    'Zero-shot (k = 0) with a 20-token query and two 2-token answers: the model runs on query + answer once PER ANSWER, 2 × (20 + 2) = 44 tokens.':
        '零样本（k = 0），查询 20 个词元，两个答案各 2 个词元：模型对每个答案各运行一次"查询 + 答案"，2 × (20 + 2) = 44 个词元。',
    'Each of the k demonstrations is processed again for every prediction (and every answer): k × demo_tokens belongs to the prompt, not counted once.':
        '每次预测（以及每个答案）都要重新处理全部 k 个示例：k × demo_tokens 属于提示的一部分，而不是只算一次。',
    "Answers of different lengths: add each answer's OWN length to the prompt (answer_tokens is a list, e.g. [1, 3]).":
        '答案长度不同：给提示加上每个答案自己的长度（answer_tokens 是一个列表，例如 [1, 3]）。',
    'FLOPs ≈ 2 × parameters × tokens: one multiply and one add per weight per token.':
        'FLOPs ≈ 2 × 参数量 × 词元数：每个词元、每个权重做一次乘法和一次加法。',
    # 10_fewshot q3
    'L_UL uses log(1 − p), not log p: a wrong answer with p = 0.9 must cost much more than one with p = 0.1.':
        'L_UL 用的是 log(1 − p)，而不是 log p：一个 p = 0.9 的错误答案的代价必须远大于 p = 0.1 的错误答案。',
    "Only the WRONG answers count: with two answers and label 1, answer 0's tokens alone enter L_UL (mask out the correct answer with one_hot(labels)).":
        '只有错误答案才计入：有两个答案且标签为 1 时，只有答案 0 的词元进入 L_UL（用 one_hot(labels) 把正确答案遮掉）。',
    "Divide by the number of the wrong answers' tokens (answer_mask), not by T: padding (mask 0) must not change L_UL.":
        '除以错误答案的词元数（answer_mask），而不是除以 T：填充位置（掩码为 0）不能改变 L_UL。',
    'Per example, then the MEAN over the batch: two examples with L_UL 0.1054 and 2.3026 give 1.204, not their sum.':
        '先按样本计算，再对批次取平均：两个样本的 L_UL 分别为 0.1054 和 2.3026，结果是 1.204，而不是它们的和。',
    # 10_fewshot q4
    'For each label c = 0, 1, ... in turn, keep the FIRST index j met in `order` with labels[j] == c: order [2, 3, 1, 0] over labels [0, 1, 0, 1] gives [2, 3].':
        '依次对每个标签 c = 0, 1, ...，保留在 `order` 中遇到的第一个满足 labels[j] == c 的下标 j：在 labels [0, 1, 0, 1] 上，order [2, 3, 1, 0] 得到 [2, 3]。',
    'The input is never its own demonstration: skip j == exclude (it would show the input its own answer) and take the next example of that label in `order`.':
        '输入永远不能当作它自己的示例：跳过 j == exclude（否则等于把输入自己的答案给它看），取 `order` 中该标签的下一个样本。',
    "The demonstrations go in LABEL order (label 0's first, then label 1's), not in the order `order` meets them.":
        '示例按标签顺序排列（先标签 0 的，再标签 1 的），而不是按 `order` 遇到它们的顺序。',
    "Label 0's only example is the input itself: there is nothing to show, so raise ValueError (never return the input, never skip the label).":
        '标签 0 唯一的样本就是输入本身：没有可展示的样本，因此要 raise ValueError（绝不能返回输入本身，也不能跳过这个标签）。',
    # 09_choosing q1
    'Return a list of names (the keys of points): one method alone is its own front.':
        '返回名字（points 的键）组成的列表：只有一个方法时，它自己就是前沿。',
    'Lower cost is better: a cheaper and more accurate method dominates a dearer, less accurate one, and the most accurate one stays on the front whatever it costs.':
        '代价越低越好：更便宜且更准确的方法支配更贵、更不准确的方法；而最准确的方法无论代价多大都留在前沿上。',
    'b is exactly as accurate as a and costs more: a dominates it. Dominating needs at least as good on BOTH and strictly better on ONE, not strictly better on both.':
        'b 与 a 准确率完全相同而代价更高：a 支配 b。支配要求在两个坐标上都不差、并在其中一个上严格更好，而不是在两个坐标上都严格更好。',
    'Two identical points do not dominate each other (neither is strictly better on any axis): both stay.':
        '两个完全相同的点互不支配（谁都没有在任何坐标上严格更好）：两者都保留。',
    "Not the front of the chapter's table (accuracy, trainable %): keep every name no other point dominates, in the order of points.":
        '这不是本章表格（准确率，可训练占比 %）的前沿：保留所有不被其他点支配的名字，并按 points 中的顺序排列。',
    # 09_choosing q2
    'Return three numbers (diff, low, high) with low <= diff <= high.':
        '返回三个数 (diff, low, high)，且 low <= diff <= high。',
    'The difference is A − B (mean of a_i − b_i): positive when A gets more snippets right. Check the order.':
        '差值是 A − B（a_i − b_i 的均值）：A 答对的片段更多时为正。检查相减的顺序。',
    'The interval is far too wide: the standard error of a mean divides the standard deviation by √N.':
        '区间太宽了：均值的标准误是标准差除以 √N。',
    "Paired: the standard error of the per-snippet DIFFERENCES d_i = a_i − b_i, not the two accuracies' errors added as if the runs were independent (that interval is far wider).":
        '配对：要用每个片段的差值 d_i = a_i − b_i 的标准误，而不是把两个准确率的误差当作相互独立的运行加在一起（那样的区间宽得多）。',
    'Not the 95 % interval: diff ± 1.96 · se, with se = std(d, ddof=1) / √N.':
        '这不是 95 % 区间：diff ± 1.96 · se，其中 se = std(d, ddof=1) / √N。',
    # 09_choosing q3
    'lora_trainable and lora_bytes must be whole numbers (int), lora_pct a number.':
        'lora_trainable 和 lora_bytes 必须是整数（int），lora_pct 是一个数。',
    'Every method trains the classification head too: add its 770 numbers.':
        '每种方法都还要训练分类头：加上它的 770 个数。',
    'LoRA goes on W_q AND W_v: two matrices per layer, each r · (384 + 384).':
        'LoRA 同时加在 W_q 和 W_v 上：每层两个矩阵，每个 r · (384 + 384)。',
    "Not the count: per layer 2 matrices × r · (d_in + d_out), over 6 layers, plus the head's 770.":
        '数量不对：每层 2 个矩阵 × r · (d_in + d_out)，共 6 层，再加上分类头的 770 个数。',
    'A percentage, not a fraction: 100 × trainable / total.':
        '要的是百分数，不是比例：100 × trainable / total。',
    'Not the percentage: 100 × lora_trainable / 22,713,986 (checked to 3 decimals).':
        '百分比不对：100 × lora_trainable / 22,713,986（检查到小数点后 3 位）。',
    'Bytes, not bits: a float32 number takes 4 bytes.':
        '是字节，不是比特：一个 float32 数占 4 个字节。',
    'float32 is 4 bytes per number (2 would be float16 or bfloat16).':
        'float32 每个数占 4 个字节（2 个字节是 float16 或 bfloat16）。',
    'Not the bytes: 4 bytes per float32 number × lora_trainable.':
        '字节数不对：每个 float32 数 4 个字节 × lora_trainable。',
}
