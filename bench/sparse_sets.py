"""The structures of the sparse-annotation benchmark, split into a tune set and a report set.

Label values follow TotalSegmentator's class maps ("total" for ts_ct_full, "total_mr" for ts_mr_sm; the
volumes and their licences are described in ../shared/data/README.md). Constants of the fine-tuning
pipeline are chosen on TUNE only; REPORT is where the benchmark's numbers count. TUNE holds the ten
structures the pipeline's earlier constants were chosen on, fourteen more of the kinds REPORT holds, and seventeen
more of those kinds added for the choice of the suggested slice (docs/benchmarks/sparse_rounds.md says which
question there came from a REPORT run; the answer was chosen on TUNE). The sets share no structure but do share
volumes: 23 REPORT structures lie in the same ts_ct_full and ts_mr_sm volumes as 39 TUNE ones, and TUNE holds the
left-right counterparts of two REPORT structures (the CT and MR kidneys), as docs/benchmarks/sparse.md says.
"""

from __future__ import annotations

# folder:structure -> label value(s) forming the structure
TUNE: dict[str, int | list[int]] = {
    "ts_ct_full:liver": 5,
    "ts_ct_full:spleen": 1,
    "ts_ct_full:kidney_left": 3,
    "ts_ct_full:aorta": 52,
    "ts_ct_full:bladder": 21,
    "ts_mr_sm:liver": 5,
    "ts_mr_sm:spleen": 1,
    "ts_mr_sm:kidney_right": 2,
    "pyr_brain1:lesion": 1,
    "pyr_breast1:lesion": 1,
    # added so that the tune set holds the kinds of structure the report set does (thin, long, branching,
    # bones, muscles, bowel); none is a report structure or its left-right counterpart
    "ts_ct_full:lung_lower_lobe_left": 11,
    "ts_ct_full:small_bowel": 18,
    "ts_ct_full:colon": 20,
    "ts_ct_full:prostate": 22,
    "ts_ct_full:vertebra_S1": 26,
    "ts_ct_full:vertebra_L1": 31,
    "ts_ct_full:iliac_vena_left": 67,
    "ts_ct_full:gluteus_medius_left": 82,
    "ts_ct_full:gluteus_minimus_left": 84,
    "ts_ct_full:costal_cartilages": 117,
    "ts_mr_sm:pancreas": 7,
    "ts_mr_sm:duodenum": 14,
    "ts_mr_sm:spinal_cord": 21,
    "ts_mr_sm:portal_splenic_vein": 25,
    # added for the choice of the suggested slice (docs/benchmarks/sparse_rounds.md): more structures of the same
    # kinds, none a report structure or its left-right counterpart in the same volume; the tune tables dated
    # before these were added cover the 24 above. (The MR intervertebral discs were left out: the bin-centre
    # slices of the protocol hold none of them.)
    "ts_ct_full:adrenal_gland_right": 8,
    "ts_ct_full:adrenal_gland_left": 9,
    "ts_ct_full:lung_upper_lobe_left": 10,
    "ts_ct_full:lung_lower_lobe_right": 14,
    "ts_ct_full:vertebra_L5": 27,
    "ts_ct_full:vertebra_L4": 28,
    "ts_ct_full:vertebra_L2": 30,
    "ts_ct_full:vertebra_T12": 32,
    "ts_ct_full:iliac_vena_right": 68,
    "ts_ct_full:gluteus_medius_right": 83,
    "ts_ct_full:gluteus_minimus_right": 85,
    "ts_ct_full:rib_left_10": 101,
    "ts_ct_full:rib_right_10": 113,
    "ts_mr_sm:adrenal_gland_right": 8,
    "ts_mr_sm:adrenal_gland_left": 9,
    "ts_mr_sm:iliopsoas_left": 46,
    "ts_mr_sm:iliopsoas_right": 47,
}

REPORT: dict[str, int | list[int]] = {
    "ts_ct_full:kidney_right": 2,
    "ts_ct_full:gallbladder": 4,
    "ts_ct_full:stomach": 6,
    "ts_ct_full:pancreas": 7,
    "ts_ct_full:duodenum": 19,
    "ts_ct_full:sacrum": 25,
    "ts_ct_full:vertebra_L3": 29,
    "ts_ct_full:inferior_vena_cava": 63,
    "ts_ct_full:portal_splenic_vein": 64,
    "ts_ct_full:iliac_artery_left": 65,
    "ts_ct_full:femur_left": 75,
    "ts_ct_full:hip_right": 78,
    "ts_ct_full:spinal_cord": 79,
    "ts_ct_full:gluteus_maximus_left": 80,
    "ts_ct_full:autochthon_left": 86,
    "ts_ct_full:iliopsoas_right": 89,
    "ts_mr_sm:kidney_left": 3,
    "ts_mr_sm:gallbladder": 4,
    "ts_mr_sm:stomach": 6,
    "ts_mr_sm:colon": 15,
    "ts_mr_sm:vertebrae": 19,
    "ts_mr_sm:aorta": 23,
    "ts_mr_sm:inferior_vena_cava": 24,
    "pyr_brain2:lesion": 1,
    "pyr_lung1:nodule": 1,
}

# every structure: the tune set, then the report set (the protocol's order)
STRUCTURES = {**TUNE, **REPORT}
SETS = {"tune": TUNE, "report": REPORT}
