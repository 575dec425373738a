/* options.c — the one option table (see options.h).
 *
 * Each row: key (MMDetection's name where it has one), type, field, range, default,
 * choices, list length bounds, one-line doc. Rows sharing a dotted prefix stay together
 * so that the YAML dump nests them. Defaults are MMDetection's for GFL on COCO
 * (../shared/reference/crosskd.md §3, §5, §7-§9) unless the doc says otherwise.
 */
#include "worker/options.h"

#include <stddef.h>

#define F(field) offsetof(kd_config, field)
#define NORANGE 1, 0
#define INT(key, field, lo, hi, def, doc) {key, KD_OPT_INT, F(field), lo, hi, def, NULL, 0, 0, doc}
#define INTC(key, field, choices, def, doc) {key, KD_OPT_INT, F(field), NORANGE, def, choices, 0, 0, doc}
#define FLT(key, field, lo, hi, def, doc) {key, KD_OPT_FLOAT, F(field), lo, hi, def, NULL, 0, 0, doc}
#define BOOL(key, field, def, doc) {key, KD_OPT_BOOL, F(field), NORANGE, def, NULL, 0, 0, doc}
#define STR(key, field, def, doc) {key, KD_OPT_STR, F(field), NORANGE, def, NULL, 0, 0, doc}
#define ENUM(key, field, choices, def, doc) {key, KD_OPT_ENUM, F(field), NORANGE, def, choices, 0, 0, doc}
#define LIST(key, field, lo, hi, nmin, nmax, def, doc) {key, KD_OPT_LIST, F(field), lo, hi, def, NULL, nmin, nmax, doc}

static const kd_opt k_opts[] = {
    /* ---- runtime ---- */
    ENUM("device", device, "cpu|cuda", "cpu", "compute device; cuda needs a CUDA build and a GPU per rank"),
    INT("threads", threads, 0, 1024, "0", "CPU threads per rank; 0 = OMP_NUM_THREADS, else all cores"),
    FLT("env_cfg.dist_cfg.timeout", dist_timeout, 1, 1e6, "1800",
        "seconds one NCCL gradient collective may take before the watchdog ends the job (device: cuda)"),
    STR("work_dir", work_dir, "work_dirs/default", "run directory: logs, checkpoints, results, status socket"),
    ENUM("log_level", log_level, "debug|info|warn|error", "info", "logging threshold on rank 0"),
    STR("resume", resume, "", "'' = start fresh; 'auto' = latest valid checkpoint in work_dir; or a checkpoint path"),
    STR("load_from", load_from, "", "initial student weights (safetensors, MMDetection key names); '' = initialise"),
    INT("randomness.seed", seed, 0, 2147483647, "0", "seed for initialisation, sampling and augmentation"),
    BOOL("randomness.deterministic", deterministic, "true", "fixed reduction order: same seed and world size give the same weights"),
    INT("default_hooks.logger.interval", log_interval, 1, 1000000, "50", "log losses, lr, time and ETA every N iterations"),
    INT("default_hooks.checkpoint.interval", checkpoint_interval, 1, 1000000, "1", "save a checkpoint every N epochs"),
    INT("default_hooks.checkpoint.max_keep_ckpts", max_keep_ckpts, 1, 1000, "3", "keep the last N checkpoints"),

    /* ---- student model ---- */
    ENUM("model.type", model.type, "GFL|RetinaNet|ATSS|FCOS", "GFL", "detector"),
    INTC("model.backbone.depth", model.backbone.depth, "18|34|50|101", "50", "ResNet depth"),
    INT("model.backbone.base_channels", model.backbone.base_channels, 1, 256, "64", "ResNet stem width (64 = standard; smaller for CPU runs)"),
    INT("model.backbone.frozen_stages", model.backbone.frozen_stages, -1, 4, "1", "stem and the first N stages get no gradient (-1 = none)"),
    BOOL("model.backbone.norm_eval", model.backbone.norm_eval, "true", "BatchNorm uses running statistics (affine still trained)"),
    ENUM("model.backbone.style", model.backbone.style, "pytorch|caffe", "pytorch", "stride on the 3x3 (pytorch) or the 1x1 (caffe) conv"),
    INT("model.neck.out_channels", model.neck.out_channels, 1, 4096, "256", "FPN channels"),
    INT("model.neck.start_level", model.neck.start_level, 0, 3, "1", "first backbone stage fed to the FPN (1 = C3)"),
    INT("model.neck.num_outs", model.neck.num_outs, 1, 8, "5", "FPN outputs (P3..P7)"),
    ENUM("model.neck.add_extra_convs", model.neck.add_extra_convs, "on_output|on_input|on_lateral|none", "on_output", "source of the extra stride-2 levels"),
    BOOL("model.neck.relu_before_extra_convs", model.neck.relu_before_extra_convs, "false", "ReLU before the extra convs (FCOS)"),
    ENUM("model.bbox_head.type", model.bbox_head.type, "GFLHead|RetinaHead|ATSSHead|FCOSHead", "GFLHead",
         "dense head; must match model.type (GFL, RetinaNet, ATSS, FCOS)"),
    INT("model.bbox_head.num_classes", model.bbox_head.num_classes, 1, 1000, "80", "object classes (sigmoid, no background channel)"),
    INT("model.bbox_head.stacked_convs", model.bbox_head.stacked_convs, 0, 8, "4", "conv blocks per head tower"),
    INT("model.bbox_head.feat_channels", model.bbox_head.feat_channels, 1, 4096, "256", "head tower channels"),
    INT("model.bbox_head.reg_max", model.bbox_head.reg_max, 1, 64, "16", "GFL: distance bins per side are reg_max+1"),
    ENUM("model.bbox_head.norm_cfg.type", model.bbox_head.norm_type, "default|GN|none", "default",
         "head tower normalisation: default = the head type's (GN; none for RetinaHead, as in MMDetection)"),
    INT("model.bbox_head.norm_cfg.num_groups", model.bbox_head.gn_groups, 1, 1024, "32", "GroupNorm groups in the head towers"),
    INT("model.bbox_head.anchor_generator.octave_base_scale", model.bbox_head.octave_base_scale, 1, 64, "8", "anchor side in strides"),
    INT("model.bbox_head.anchor_generator.scales_per_octave", model.bbox_head.scales_per_octave, 1, 8, "1",
        "RetinaHead: anchor scales octave_base_scale * 2^(i/n), i < n"),
    LIST("model.bbox_head.anchor_generator.ratios", model.bbox_head.ratios, 0.01, 100, 1, 8, "[1.0]",
         "RetinaHead: anchor height/width ratios (GFL and ATSS use one ratio-1 anchor)"),
    LIST("model.bbox_head.anchor_generator.strides", model.bbox_head.strides, 1, 1024, 1, 8, "[8, 16, 32, 64, 128]", "stride of each FPN level"),
    LIST("model.bbox_head.regress_ranges", model.bbox_head.regress_ranges, 0, 1e8, 1, 7, "[64, 128, 256, 512]",
         "FCOSHead: level boundaries of the regress ranges ((-1, 64), (64, 128), ..., (512, INF))"),
    LIST("model.bbox_head.bbox_coder.target_stds", model.bbox_head.target_stds, 1e-6, 100, 4, 4, "[0.1, 0.1, 0.2, 0.2]",
         "DeltaXYWHBBoxCoder stds (ATSSHead; RetinaHead uses [1, 1, 1, 1]); means are 0"),
    FLT("model.bbox_head.loss_cls.beta", model.bbox_head.loss_cls_beta, 0, 10, "2.0", "GFLHead: QFL modulating exponent"),
    FLT("model.bbox_head.loss_cls.gamma", model.bbox_head.loss_cls_gamma, 0, 10, "2.0", "ATSSHead, RetinaHead: focal loss gamma"),
    FLT("model.bbox_head.loss_cls.alpha", model.bbox_head.loss_cls_alpha, 0, 1, "0.25", "ATSSHead, RetinaHead: focal loss alpha"),
    FLT("model.bbox_head.loss_cls.loss_weight", model.bbox_head.loss_cls_weight, 0, 1000, "1.0", "classification loss weight (QFL or focal)"),
    FLT("model.bbox_head.loss_bbox.loss_weight", model.bbox_head.loss_bbox_weight, 0, 1000, "2.0", "box loss weight (GIoU; RetinaHead: L1, 1.0 in its configs)"),
    FLT("model.bbox_head.loss_dfl.loss_weight", model.bbox_head.loss_dfl_weight, 0, 1000, "0.25", "GFLHead: DFL weight"),
    FLT("model.bbox_head.loss_centerness.loss_weight", model.bbox_head.loss_centerness_weight, 0, 1000, "1.0",
        "ATSSHead: centerness BCE weight"),
    INT("model.train_cfg.assigner.topk", model.train_cfg.topk, 1, 100, "9", "ATSS candidates per level and ground-truth box"),
    FLT("model.train_cfg.assigner.pos_iou_thr", model.train_cfg.pos_iou_thr, 0, 1, "0.5", "MaxIoUAssigner (RetinaNet): positive at IoU >= this"),
    FLT("model.train_cfg.assigner.neg_iou_thr", model.train_cfg.neg_iou_thr, 0, 1, "0.4", "MaxIoUAssigner: negative below this; between the two ignored"),
    FLT("model.train_cfg.assigner.min_pos_iou", model.train_cfg.min_pos_iou, 0, 1, "0", "MaxIoUAssigner: a gt's best anchors are positive from this IoU"),
    INT("model.test_cfg.nms_pre", model.test_cfg.nms_pre, 1, 100000, "1000", "top (location, class) pairs kept per level before NMS"),
    FLT("model.test_cfg.score_thr", model.test_cfg.score_thr, 0, 1, "0.05", "drop scores at or below this"),
    FLT("model.test_cfg.nms.iou_threshold", model.test_cfg.nms_iou_threshold, 0, 1, "0.6", "class-aware NMS IoU threshold"),
    INT("model.test_cfg.max_per_img", model.test_cfg.max_per_img, 1, 10000, "100", "detections kept per image"),
    FLT("model.test_cfg.min_bbox_size", model.test_cfg.min_bbox_size, 0, 1e6, "0", "drop boxes whose width or height is not above this"),
    LIST("model.data_preprocessor.mean", model.data_preprocessor.mean, -1e4, 1e4, 3, 3, "[123.675, 116.28, 103.53]", "per-channel mean (RGB, 0-255)"),
    LIST("model.data_preprocessor.std", model.data_preprocessor.std, 1e-6, 1e4, 3, 3, "[58.395, 57.12, 57.375]", "per-channel std (RGB, 0-255)"),
    BOOL("model.data_preprocessor.bgr_to_rgb", model.data_preprocessor.bgr_to_rgb, "true", "convert decoded BGR to RGB before normalising"),
    INT("model.data_preprocessor.pad_size_divisor", model.data_preprocessor.pad_size_divisor, 1, 1024, "32", "batch padded right and bottom to a multiple of this"),

    /* ---- distillation ---- */
    ENUM("model.kd_cfg.method", model.kd_cfg.method, "none|crosskd|pred_mimic|ld|pkd|rm_pfi|bckd", "none",
         "distillation method; none trains the detector alone"),
    INT("model.kd_cfg.reused_teacher_head_idx", model.kd_cfg.reused_teacher_head_idx, 0, 8, "3",
        "CrossKD position i: student features after head block i go through teacher blocks i+1.."),
    FLT("model.kd_cfg.loss_cls_kd.loss_weight", model.kd_cfg.loss_cls_kd_weight, 0, 1000, "1.0", "classification KD weight (KD-QFL); 0 = off"),
    FLT("model.kd_cfg.loss_cls_kd.beta", model.kd_cfg.loss_cls_kd_beta, 0, 10, "1.0", "KD-QFL modulating exponent"),
    FLT("model.kd_cfg.loss_reg_kd.loss_weight", model.kd_cfg.loss_reg_kd_weight, 0, 1000, "4.0", "regression KD weight (GFL: KL on the bin distributions, 4.0; ATSS: GIoU on decoded boxes, 1.0); 0 = off"),
    FLT("model.kd_cfg.loss_reg_kd.T", model.kd_cfg.loss_reg_kd_T, 1e-3, 100, "1.0", "KL temperature"),
    FLT("model.kd_cfg.loss_center_kd.loss_weight", model.kd_cfg.loss_center_kd_weight, 0, 1000, "1.0",
        "ATSS: centerness KD weight (BCE to the teacher's sigmoid centerness on positives); 0 = off"),
    FLT("model.kd_cfg.loss_feat_kd.loss_weight", model.kd_cfg.loss_feat_kd_weight, 0, 1000, "0",
        "PKD feature loss weight on FPN outputs (6.0 in CrossKD+PKD for GFL); 0 = off"),
    BOOL("model.kd_cfg.adapter", model.kd_cfg.adapter, "false", "learned 1x1 conv from student to teacher head channels when they differ"),
    BOOL("model.kd_cfg.log_conflict_ratio", model.kd_cfg.log_conflict_ratio, "false", "log the target-conflict/positive area ratio (paper Fig. 3)"),
    FLT("model.kd_cfg.conflict_threshold", model.kd_cfg.conflict_threshold, 0, 1, "0.5", "score discrepancy that counts as a target conflict"),
    STR("teacher_config", teacher_config, "", "YAML file whose model section describes the teacher (relative to this file)"),
    STR("teacher_ckpt", teacher_ckpt, "", "teacher weights (safetensors with MMDetection key names)"),

    /* ---- data ---- */
    STR("data_root", data_root, "data/synth", "dataset folder; annotation and image paths are relative to it"),
    INT("train_dataloader.batch_size", train_batch_size, 1, 1024, "2", "images per rank per iteration"),
    INT("train_dataloader.num_workers", train_num_workers, 0, 64, "2", "loader threads per rank"),
    ENUM("train_dataloader.batch_sampler.type", batch_sampler, "AspectRatioBatchSampler|DefaultBatchSampler",
         "AspectRatioBatchSampler", "group each batch by orientation (landscape or portrait), or not"),
    BOOL("train_dataloader.sampler.shuffle", shuffle, "true", "a new permutation every epoch from the seed"),
    STR("train_dataloader.dataset.ann_file", train_dataset.ann_file, "annotations/instances_train.json", "training annotations"),
    STR("train_dataloader.dataset.data_prefix.img", train_dataset.img_prefix, "train/", "training images folder"),
    BOOL("train_dataloader.dataset.filter_cfg.filter_empty_gt", train_dataset.filter_empty_gt, "true", "drop images without usable boxes"),
    INT("train_dataloader.dataset.filter_cfg.min_size", train_dataset.min_size, 0, 100000, "32", "drop images whose shorter side is below this"),
    INT("val_dataloader.batch_size", val_batch_size, 1, 1024, "1", "images per rank per evaluation step"),
    INT("val_dataloader.num_workers", val_num_workers, 0, 64, "2", "loader threads per rank for evaluation"),
    STR("val_dataloader.dataset.ann_file", val_dataset.ann_file, "annotations/instances_val.json", "validation annotations"),
    STR("val_dataloader.dataset.data_prefix.img", val_dataset.img_prefix, "val/", "validation images folder"),
    BOOL("val_dataloader.dataset.filter_cfg.filter_empty_gt", val_dataset.filter_empty_gt, "false", "evaluation keeps every image"),
    INT("val_dataloader.dataset.filter_cfg.min_size", val_dataset.min_size, 0, 100000, "0", "evaluation keeps every image"),
    LIST("train_pipeline.resize.scale", resize_scale, 1, 100000, 2, 2, "[1333, 800]", "resize keeping aspect ratio to fit (long, short)"),
    FLT("train_pipeline.random_flip.prob", flip_prob, 0, 1, "0.5", "horizontal flip probability"),
    ENUM("train_pipeline.on_bad_image", on_bad_image, "skip|replace", "skip", "a corrupt image is logged and skipped, or replaced by another"),

    /* ---- optimisation and schedule ---- */
    FLT("optim_wrapper.optimizer.lr", lr, 0, 10, "0.01", "SGD learning rate for base_batch_size images (see auto_scale_lr)"),
    FLT("optim_wrapper.optimizer.momentum", momentum, 0, 1, "0.9", "SGD momentum"),
    FLT("optim_wrapper.optimizer.weight_decay", weight_decay, 0, 1, "0.0001", "L2 weight decay on every trainable parameter"),
    ENUM("optim_wrapper.type", amp, "OptimWrapper|AmpOptimWrapper", "OptimWrapper",
         "AmpOptimWrapper: mixed precision (device: cuda; fp32 master weights and accumulation)"),
    ENUM("optim_wrapper.dtype", amp_dtype, "float16|bfloat16", "float16",
         "AmpOptimWrapper's matrix math: float16 (loss scaling) or bfloat16"),
    FLT("optim_wrapper.loss_scale", loss_scale, 0, 1e38, "0",
        "0 = dynamic for float16 (GradScaler: 2^16, x2 after 2000 finite steps, /2 on Inf/NaN), else none; > 0 = static"),
    FLT("optim_wrapper.clip_grad.max_norm", clip_grad_max_norm, 0, 1e6, "0", "gradient-norm clipping; 0 = off"),
    BOOL("auto_scale_lr.enable", auto_scale_lr, "true", "lr *= world_size * batch_size / base_batch_size"),
    INT("auto_scale_lr.base_batch_size", base_batch_size, 1, 1000000, "16", "total batch the lr was tuned for"),
    FLT("param_scheduler.warmup.start_factor", warmup_start_factor, 0, 1, "0.001", "linear warm-up starts at lr * start_factor"),
    INT("param_scheduler.warmup.end", warmup_iters, 0, 100000000, "500", "warm-up iterations (reaches lr at end-1)"),
    LIST("param_scheduler.multistep.milestones", milestones, 0, 100000, 0, 8, "[8, 11]", "epochs at which lr *= gamma"),
    FLT("param_scheduler.multistep.gamma", gamma, 0, 1, "0.1", "step decay factor"),
    INT("train_cfg.max_epochs", max_epochs, 1, 100000, "12", "training epochs"),
    INT("train_cfg.max_iters", max_iters, 0, 1000000000, "0", "stop after this many iterations; 0 = by epochs"),
    INT("train_cfg.val_interval", val_interval, 0, 100000, "1", "evaluate every N epochs (and at the end); 0 = only at the end"),

    /* ---- gradient all-reduce (MMEngine's DDP wrapper settings) ---- */
    FLT("model_wrapper_cfg.bucket_cap_mb", grad_bucket_mb, 0.001, 1024, "4",
        "gradient all-reduce bucket size in MiB (buckets cover the gradient arena from its end)"),
    BOOL("model_wrapper_cfg.overlap_grad_sync", grad_sync_overlap, "true",
         "start each bucket's all-reduce as soon as backward has finished it; false = all after backward"),

    /* ---- status server ---- */
    STR("status.socket", status_socket, "", "Unix socket path; '' = <work_dir>/crosskd.sock"),
    STR("status.tcp.host", status_tcp_host, "127.0.0.1", "address of the optional TCP listener"),
    INT("status.tcp.port", status_tcp_port, 0, 65535, "0", "TCP port; 0 = no TCP listener"),
    STR("status.tcp.token_file", status_token_file, "", "file holding the token TCP clients must send (mode 0600)"),
};

static const kd_opt_table k_table = {k_opts, sizeof k_opts / sizeof k_opts[0], sizeof(kd_config)};

const kd_opt_table *kd_options_table(void) { return &k_table; }

kd_status kd_options_load(kd_config *cfg, const char *path, const char *const *sets, int n_sets,
                          kd_err *err)
{
    if (kd_config_defaults(&k_table, cfg, err)) return err ? err->code : KD_EINVAL;
    if (path && kd_config_load_file(&k_table, cfg, path, err)) return err ? err->code : KD_EINVAL;
    for (int i = 0; i < n_sets; i++)
        if (kd_config_set(&k_table, cfg, sets[i], err)) return err ? err->code : KD_EINVAL;
    return KD_OK;
}
