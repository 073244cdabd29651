"""The pack's V3 extension: the list of RFMI nodes ComfyUI registers."""

from __future__ import annotations

from comfy_api.latest import ComfyExtension, io

from .best_of_n import RFMIBestOfN
from .export_set import RFMIExportFinetuneSet
from .heatmap import RFMIHeatmap
from .phrase_mi import RFMIPhraseMI
from .prompt_list import RFMIPromptList
from .rank_and_pick import RFMICandidates, RFMIRankAndPick
from .rfmi_sampler import RFMISampler
from .score_latent import RFMIScoreLatent
from .toy import RFMIToyDecode, RFMIToyEmptyLatent, RFMIToyModelLoader, RFMIToyTextEncode
from .train_lora import RFMITrainLoRA

NODES: list[type[io.ComfyNode]] = [
    RFMISampler, RFMIBestOfN, RFMIScoreLatent, RFMIPhraseMI, RFMIHeatmap, RFMIPromptList, RFMIExportFinetuneSet,
    RFMITrainLoRA, RFMICandidates, RFMIRankAndPick,
    RFMIToyModelLoader, RFMIToyTextEncode, RFMIToyEmptyLatent, RFMIToyDecode,
]


class RFMIExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return list(NODES)


