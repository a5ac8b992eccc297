"""params.yaml as typed, validated sections (schema.py), read from its file (file.py); the
checks across sections are checks.py's (the check_params stage)."""

from pipeline.params.fields import ParamsError
from pipeline.params.file import load_params, parse_params, read_params_yaml, to_dict
from pipeline.params.schema import (
    AdaptParams,
    ClipParams,
    CocoPaths,
    ComputeParams,
    DataParams,
    EvalParams,
    FinetuneParams,
    MineParams,
    Params,
    PromptTuneParams,
    ProposalParams,
    ShardParams,
)

__all__ = ["AdaptParams", "ClipParams", "CocoPaths", "ComputeParams", "DataParams",
           "EvalParams", "FinetuneParams", "MineParams", "Params", "ParamsError",
           "PromptTuneParams", "ProposalParams", "ShardParams", "load_params", "parse_params",
           "read_params_yaml", "to_dict"]
