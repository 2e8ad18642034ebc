"""The masked-LM families users bring, as tiny random models with tokenizers trained here (never downloaded).

Each Family names the model's config and masked-LM classes, its base class (the checkpoint without an
MLM head, as sentence encoders and DeBERTa-v3 ship) and its tokenizer: the family's own tokenizer class
of transformers, built from a vocabulary that `tokenizers` trains offline on bbc-news text:

  wordpiece  BERT, DistilBERT, ELECTRA, MPNet        (BertNormalizer, ## continuation pieces)
  bpe        RoBERTa, DistilRoBERTa, ModernBERT       (byte-level: "Ġ" marks a word start)
  unigram    XLM-RoBERTa, CamemBERT, ALBERT, DeBERTa  (SentencePiece: "▁" marks a word start)

Each algorithm is trained once (vocabulary without special tokens); a family puts its own special tokens
first, in its own order, as its tokenizer class expects them (XLM-R's <unk> at id 3, ALBERT's at 1, ...).
ModernBERT's special tokens come last, as in its real vocabulary.

Importable without pytest: benchmarks/families.py builds the same families at ~20M parameters.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

VOCAB_SIZE = 2000  # pieces besides the special tokens: a few thousand, as the matrix needs no more


@dataclass(frozen=True)
class Size:
    hidden: int = 32
    layers: int = 2
    heads: int = 2
    intermediate: int = 64
    positions: int = 128  # tokens a sequence may have (RoBERTa-likes get their padding offset on top)


TINY = Size()


@dataclass(frozen=True)
class Family:
    name: str
    tokenizer: str  # the trained algorithm: wordpiece, bpe or unigram
    specials: tuple[str, ...]  # in vocabulary order (first ids; ModernBERT: last)
    config: str  # transformers class names
    masked_lm: str
    base: str
    tokenizer_class: str
    tokenizer_kwargs: dict = field(default_factory=dict)
    specials_last: bool = False


ROBERTA_SPECIALS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")
BERT_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")

FAMILIES = {f.name: f for f in (
    Family("bert", "wordpiece", BERT_SPECIALS, "BertConfig", "BertForMaskedLM", "BertModel", "BertTokenizer"),
    Family("distilbert", "wordpiece", BERT_SPECIALS, "DistilBertConfig", "DistilBertForMaskedLM", "DistilBertModel",
           "DistilBertTokenizer"),
    Family("electra", "wordpiece", BERT_SPECIALS, "ElectraConfig", "ElectraForMaskedLM", "ElectraModel",
           "BertTokenizer"),  # the generator is ELECTRA's masked LM; AutoTokenizer maps electra to BertTokenizer
    # MPNet's embeddings hard-code padding id 1
    Family("mpnet", "wordpiece", ("<s>", "<pad>", "</s>", "[UNK]", "<mask>"), "MPNetConfig", "MPNetForMaskedLM",
           "MPNetModel", "MPNetTokenizer"),
    Family("roberta", "bpe", ROBERTA_SPECIALS, "RobertaConfig", "RobertaForMaskedLM", "RobertaModel",
           "RobertaTokenizer"),
    Family("distilroberta", "bpe", ROBERTA_SPECIALS, "RobertaConfig", "RobertaForMaskedLM", "RobertaModel",
           "RobertaTokenizer"),  # RoBERTa with half the layers (Size.layers // 2)
    Family("modernbert", "bpe", ("[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]"), "ModernBertConfig",
           "ModernBertForMaskedLM", "ModernBertModel", "TokenizersBackend", specials_last=True),
    Family("xlm-roberta", "unigram", ROBERTA_SPECIALS, "XLMRobertaConfig", "XLMRobertaForMaskedLM",
           "XLMRobertaModel", "XLMRobertaTokenizer"),
    Family("camembert", "unigram", ROBERTA_SPECIALS, "CamembertConfig", "CamembertForMaskedLM", "CamembertModel",
           "CamembertTokenizer"),
    Family("albert", "unigram", ("<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]"), "AlbertConfig", "AlbertForMaskedLM",
           "AlbertModel", "AlbertTokenizer"),
    # DeBERTa-v3 ships without an MLM head: its base is what users bring (a grown head)
    Family("deberta-v2", "unigram", BERT_SPECIALS, "DebertaV2Config", "DebertaV2ForMaskedLM", "DebertaV2Model",
           "DebertaV2Tokenizer"),
)}


# --- tokenizers ----------------------------------------------------------------------------------

def training_texts(n: int = 40, seed: int = 1) -> list[str]:
    """bbc-news articles the tokenizers learn from (others than the 40 tests train on: news_folder is seed 0)."""
    from helpers import bbc_files

    return [p.read_text(encoding="latin-1") for p in bbc_files(n, seed=seed)]


def train_vocabulary(kind: str, texts: list[str], vocab_size: int = VOCAB_SIZE, *, lowercase: bool = True):
    """The trained pieces of one algorithm, without special tokens: wordpiece -> [token], bpe -> ([token],
    [merge]), unigram -> [(piece, score)]. The family's tokenizer class adds its normaliser and the rest."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    if kind == "wordpiece":
        tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        tok.normalizer = normalizers.BertNormalizer(lowercase=lowercase)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=["[UNK]"],
                                                                 show_progress=False))
        vocab = tok.get_vocab()
        return [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1]) if t != "[UNK]"]
    if kind == "bpe":
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False,
                                                           initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
        model = json.loads(tok.to_str())["model"]
        tokens = [t for t, _ in sorted(model["vocab"].items(), key=lambda kv: kv[1])]
        merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
        return tokens, merges
    if kind == "unigram":
        tok = Tokenizer(models.Unigram())
        tok.normalizer = normalizers.NFKC()
        tok.pre_tokenizer = pre_tokenizers.Metaspace()
        tok.train_from_iterator(texts, trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=["<unk>"],
                                                               unk_token="<unk>", show_progress=False))
        return [(p, s) for p, s in json.loads(tok.to_str())["model"]["vocab"] if p != "<unk>"]
    raise ValueError(kind)


def family_tokenizer(family: Family, vocabulary, max_length: int):
    """The family's own tokenizer class of transformers, on the trained pieces with its special tokens."""
    import transformers

    specials = list(family.specials)
    kwargs = dict(family.tokenizer_kwargs, model_max_length=max_length)
    if family.tokenizer == "wordpiece":
        tokens = specials + [t for t in vocabulary if t not in specials]
        vocab = {t: i for i, t in enumerate(tokens)}
        names = dict(zip(("pad_token", "unk_token", "cls_token", "sep_token", "mask_token"), BERT_SPECIALS))
        if family.name == "mpnet":
            names = dict(bos_token="<s>", pad_token="<pad>", eos_token="</s>", unk_token="[UNK]", mask_token="<mask>")
        return getattr(transformers, family.tokenizer_class)(vocab=vocab, **names, **kwargs)
    if family.tokenizer == "bpe":
        tokens, merges = vocabulary
        pieces = [t for t in tokens if t not in specials]
        ordered = pieces + specials if family.specials_last else specials + pieces
        vocab = {t: i for i, t in enumerate(ordered)}
        if family.name == "modernbert":
            return modernbert_tokenizer(vocab, merges, **kwargs)
        return getattr(transformers, family.tokenizer_class)(vocab=vocab, merges=merges, **kwargs)
    pieces = [(s, 0.0) for s in specials] + [(p, s) for p, s in vocabulary if p not in specials]
    names = {"albert": dict(pad_token="<pad>", unk_token="<unk>", cls_token="[CLS]", sep_token="[SEP]",
                            mask_token="[MASK]", bos_token="[CLS]", eos_token="[SEP]"),
             "deberta-v2": dict(pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]",
                                mask_token="[MASK]", bos_token="[CLS]", eos_token="[SEP]")}.get(family.name, {})
    return getattr(transformers, family.tokenizer_class)(vocab=pieces, **names, **kwargs)


def modernbert_tokenizer(vocab: dict, merges: list[tuple[str, str]], **kwargs):
    """ModernBERT ships a generic fast tokenizer (tokenizer_class PreTrainedTokenizerFast): byte-level BPE
    with BERT's special tokens and template, [MASK] taking the space before it."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import TokenizersBackend

    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS]:0 $A:0 [SEP]:0", pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
    return TokenizersBackend(tokenizer_object=tok, unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]",
                             pad_token="[PAD]", mask_token=AddedToken("[MASK]", lstrip=True, special=True), **kwargs)


# --- models --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Ids:
    """What a config needs of a tokenizer: its size and special token ids."""

    vocab_size: int
    pad: int
    bos: int | None = None
    eos: int | None = None
    cls: int | None = None
    sep: int | None = None

    @classmethod
    def of(cls, tokenizer) -> "Ids":
        return cls(len(tokenizer), tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id,
                   tokenizer.cls_token_id, tokenizer.sep_token_id)


def model_config(family: Family, ids: Ids, size: Size = TINY):
    """The family's config at `size`, for a vocabulary of ids.vocab_size and its special token ids."""
    import transformers

    cls = getattr(transformers, family.config)
    common = dict(vocab_size=ids.vocab_size, pad_token_id=ids.pad)
    layers = max(1, size.layers // 2) if family.name == "distilroberta" else size.layers
    shape = dict(hidden_size=size.hidden, num_hidden_layers=layers, num_attention_heads=size.heads,
                 intermediate_size=size.intermediate)
    name = family.name
    if name == "distilbert":
        return cls(**common, dim=size.hidden, n_layers=size.layers, n_heads=size.heads, hidden_dim=size.intermediate,
                   max_position_embeddings=size.positions)
    if name in ("roberta", "distilroberta", "xlm-roberta", "camembert", "mpnet"):
        # position ids start after the padding id: the table holds positions + pad + 1 rows (514 for 512)
        return cls(**common, **shape, bos_token_id=ids.bos, eos_token_id=ids.eos,
                   max_position_embeddings=size.positions + ids.pad + 1)
    if name == "modernbert":
        return cls(**common, **shape, cls_token_id=ids.cls, sep_token_id=ids.sep, bos_token_id=ids.cls,
                   eos_token_id=ids.sep, max_position_embeddings=size.positions,
                   local_attention=min(128, size.positions // 2), global_attn_every_n_layers=2)
    if name in ("albert", "electra"):  # embeddings narrower than the hidden size (ALBERT, electra-small-generator)
        return cls(**common, **shape, embedding_size=max(16, size.hidden // 2), max_position_embeddings=size.positions)
    if name == "deberta-v2":  # as deberta-v3-base: relative attention, no absolute positions
        return cls(**common, **shape, max_position_embeddings=size.positions, relative_attention=True,
                   position_buckets=64, norm_rel_ebd="layer_norm", share_att_key=True, pos_att_type=["p2c", "c2p"],
                   position_biased_input=False, max_relative_positions=-1, type_vocab_size=0)
    return cls(**common, **shape, max_position_embeddings=size.positions)


def build_model(family: Family, config, *, head: bool = True, seed: int = 0):
    """The family's masked LM (head=True) or its base without an MLM head, weights drawn from `seed`."""
    import torch
    import transformers

    torch.manual_seed(seed)
    return getattr(transformers, family.masked_lm if head else family.base)(config)


SENTENCE_MODULES = [
    {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
    {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
]


def write_sentence_files(folder: Path, hidden: int, max_length: int) -> None:
    """modules.json, mean pooling and normalisation: the layout of all-MiniLM, all-mpnet, ... around a base."""
    folder = Path(folder)
    (folder / "modules.json").write_text(json.dumps(SENTENCE_MODULES))
    (folder / "1_Pooling").mkdir(exist_ok=True)
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({
        "word_embedding_dimension": hidden, "pooling_mode_cls_token": False, "pooling_mode_mean_tokens": True,
        "pooling_mode_max_tokens": False, "pooling_mode_mean_sqrt_len_tokens": False}))
    (folder / "2_Normalize").mkdir(exist_ok=True)
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": max_length,
                                                                  "do_lower_case": False}))


@dataclass
class Built:
    family: Family
    mlm: str  # a folder with the masked LM (its head) and the tokenizer
    base: str  # a folder with the base without a head, the tokenizer, and sentence-transformers' files


class Vocabularies:
    """Each algorithm's pieces, trained once on first use."""

    def __init__(self, texts: list[str] | None = None, vocab_size: int = VOCAB_SIZE):
        self._texts = texts
        self.vocab_size = vocab_size
        self._trained: dict[str, object] = {}

    def __getitem__(self, kind: str):
        if kind not in self._trained:
            if self._texts is None:
                self._texts = training_texts()
            self._trained[kind] = train_vocabulary(kind, self._texts, self.vocab_size)
        return self._trained[kind]


def build_family(family: Family, folder: Path, vocabularies: Vocabularies, size: Size = TINY) -> Built:
    """Save the family's masked LM and its headless base (a sentence encoder's layout), each with the
    tokenizer, below `folder`: what AutoTokenizer and AutoModelForMaskedLM load."""
    folder = Path(folder)
    tokenizer = family_tokenizer(family, vocabularies[family.tokenizer], size.positions)
    config = model_config(family, Ids.of(tokenizer), size)
    mlm, base = folder / "mlm", folder / "base"
    build_model(family, config).save_pretrained(mlm)
    tokenizer.save_pretrained(mlm)
    build_model(family, config, head=False, seed=1).save_pretrained(base)
    tokenizer.save_pretrained(base)
    write_sentence_files(base, size.hidden, size.positions)
    return Built(family, str(mlm), str(base))


class FamilyModels:
    """Every family, each built on first use below `root` (each algorithm's vocabulary trained once): the
    conftest's session fixture, so a test of one family does not build the others."""

    def __init__(self, root: Path, vocabularies: Vocabularies | None = None):
        self.root = Path(root)
        self.vocabularies = vocabularies or Vocabularies()
        self._built: dict[str, Built] = {}

    def __getitem__(self, name: str) -> Built:
        if name not in self._built:
            self._built[name] = build_family(FAMILIES[name], self.root / name, self.vocabularies)
        return self._built[name]


# --- what cannot work: refused -------------------------------------------------------------------

def save_phobert_like(folder: Path) -> str:
    """PhoBERT's layout: a RoBERTa whose tokenizer (PhobertTokenizer: vocab.txt and bpe.codes) exists only as
    a slow, Python one. A small vocabulary of letters and words; no merges are needed to load it."""
    import string

    import torch
    from transformers import PhobertTokenizer, RobertaForMaskedLM

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    words = [f"{c}@@" for c in string.ascii_lowercase] + list(string.ascii_lowercase)
    words += "the of to and a in is that for it was on said with he as at by".split() + [f"w{i}" for i in range(100)]
    (folder / "vocab.txt").write_text("".join(f"{w} 1\n" for w in words), encoding="utf-8")
    (folder / "bpe.codes").write_text("t h 1\nth e</w> 1\n", encoding="utf-8")
    tokenizer = PhobertTokenizer(str(folder / "vocab.txt"), str(folder / "bpe.codes"), model_max_length=128)
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    RobertaForMaskedLM(model_config(FAMILIES["roberta"], Ids.of(tokenizer))).save_pretrained(folder)
    return str(folder)


def save_decoder_only(folder: Path, vocabularies: Vocabularies) -> str:
    """A tiny GPT-2 (a decoder-only language model: no masked-LM class) with a byte-level BPE tokenizer."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2Tokenizer

    tokens, merges = vocabularies["bpe"]
    tokenizer = GPT2Tokenizer(vocab={t: i for i, t in enumerate(tokens + ["<|endoftext|>"])}, merges=merges)
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    end = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=2, n_head=2, n_positions=128,
                               bos_token_id=end, eos_token_id=end)).save_pretrained(folder)
    return str(folder)


# --- Vietnamese ------------------------------------------------------------------------------------

VIETNAMESE = Path(__file__).resolve().parent / "texts" / "vietnamese.txt"  # 40 sentences written for the tests


def vietnamese_lines() -> list[str]:
    return [line for line in VIETNAMESE.read_text(encoding="utf-8").splitlines() if line.strip()]


def counted_unigram(lines: list[str]) -> list[tuple[str, float]]:
    """A SentencePiece Unigram vocabulary estimated by counting: every word of `lines` is one piece ('▁của'),
    punctuation its own (',', '.': 'Nam,' is one word of two pieces), and every character is a piece alone and
    after '▁', so an unseen word is spelled out ('▁N' 'g' 'u' 'y' 'ễ' 'n'). Scores are log relative frequencies.
    (tokenizers' UnigramTrainer keeps ~250 pieces of these 4 KB, mostly letters and fragments: '▁c' 'ủ' 'a'
    for 'của', where XLM-R reads common Vietnamese syllables whole.)"""
    import math
    import re
    from collections import Counter

    counts: Counter = Counter()
    for word in (w for line in lines for w in line.split()):
        counts.update(("▁" if i == 0 else "") + part for i, part in enumerate(re.findall(r"\w+|[^\w\s]", word)))
    for char in set("".join(lines)) - {" "}:
        counts[char] += 0
        counts["▁" + char] += 0
    total = sum(counts.values()) + len(counts)
    return [(piece, math.log((n + 1) / total)) for piece, n in counts.most_common()]


def build_vietnamese(folder: Path) -> str:
    """A tiny XLM-RoBERTa without an MLM head (as the multilingual sentence encoders ship) whose SentencePiece
    (Unigram) tokenizer is estimated on the Vietnamese sentences."""
    family = FAMILIES["xlm-roberta"]
    tokenizer = family_tokenizer(family, counted_unigram(vietnamese_lines()), TINY.positions)
    build_model(family, model_config(family, Ids.of(tokenizer)), head=False).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)
