/* options.h — the project's configuration: one plain struct, filled from the option table
 * in options.c (name, type, range, default, one-line doc per option), which also prints
 * `--help`, dumps the effective config and answers `crosskdctl config`.
 *
 * Field names mirror MMDetection's config keys (model.backbone.depth lives in
 * cfg.model.backbone.depth); the table is the only place keys are spelled.
 * Strings are fixed arrays and lists are kd_cfg_list, so the struct is plain bytes that
 * rank 0 can broadcast.
 */
#ifndef KD_OPTIONS_H
#define KD_OPTIONS_H

#include <stdbool.h>

#include "proto/config.h"

typedef enum { KD_DEVICE_CPU = 0, KD_DEVICE_CUDA } kd_device;
typedef enum { KD_DET_GFL = 0, KD_DET_RETINANET, KD_DET_ATSS, KD_DET_FCOS } kd_detector;
typedef enum { KD_EXTRA_ON_OUTPUT = 0, KD_EXTRA_ON_INPUT, KD_EXTRA_ON_LATERAL, KD_EXTRA_NONE } kd_extra_convs;
typedef enum {
    KD_KD_NONE = 0,  /* plain detector training */
    KD_KD_CROSSKD,   /* cross-head KD (the paper) */
    KD_KD_PRED_MIMIC,/* KD-QFL + KL on the student's own predictions ("KD"/"LD" rows) */
    KD_KD_LD,        /* LD with main and valuable-localisation regions */
    KD_KD_PKD,       /* PKD on FPN features only */
    KD_KD_RM_PFI,    /* Rank Mimicking + Prediction-guided Feature Imitation */
    KD_KD_BCKD,      /* BCKD */
} kd_kd_method;

typedef char kd_cfg_str[KD_CFG_STR_BYTES];

typedef struct kd_model_cfg {
    int type; /* kd_detector */
    struct {
        long long depth, base_channels, frozen_stages;
        bool norm_eval;
        int style; /* 0 pytorch, 1 caffe */
    } backbone;
    struct {
        long long out_channels, start_level, num_outs;
        int add_extra_convs; /* kd_extra_convs */
        bool relu_before_extra_convs;
    } neck;
    struct {
        int type; /* kd_detector of the head (GFLHead, RetinaHead, ATSSHead, FCOSHead) */
        long long num_classes, stacked_convs, feat_channels, reg_max, gn_groups;
        int norm_type; /* 0 the head type's default (GN; none for RetinaHead), 1 GN, 2 none */
        long long octave_base_scale, scales_per_octave;
        kd_cfg_list strides, ratios, target_stds, regress_ranges;
        double loss_cls_beta, loss_cls_gamma, loss_cls_alpha, loss_cls_weight;
        double loss_bbox_weight, loss_dfl_weight, loss_centerness_weight;
    } bbox_head;
    struct {
        long long topk;
        double pos_iou_thr, neg_iou_thr, min_pos_iou;
    } train_cfg;
    struct {
        long long nms_pre, max_per_img;
        double score_thr, nms_iou_threshold, min_bbox_size;
    } test_cfg;
    struct {
        kd_cfg_list mean, std;
        bool bgr_to_rgb;
        long long pad_size_divisor;
    } data_preprocessor;
    struct {
        int method; /* kd_kd_method */
        long long reused_teacher_head_idx;
        double loss_cls_kd_weight, loss_cls_kd_beta;
        double loss_reg_kd_weight, loss_reg_kd_T;
        double loss_feat_kd_weight, loss_center_kd_weight;
        bool adapter;
        double conflict_threshold;
        bool log_conflict_ratio;
    } kd_cfg;
} kd_model_cfg;

typedef struct kd_dataset_cfg {
    kd_cfg_str ann_file, img_prefix;
    bool filter_empty_gt;
    long long min_size;
} kd_dataset_cfg;

typedef struct kd_config {
    /* runtime */
    int device; /* kd_device */
    long long threads;
    double dist_timeout; /* seconds (NCCL watchdog) */
    long long seed;
    bool deterministic;
    kd_cfg_str work_dir;
    int log_level;
    kd_cfg_str resume;
    kd_cfg_str load_from;
    long long log_interval;
    long long checkpoint_interval, max_keep_ckpts;
    /* models */
    kd_model_cfg model;
    kd_cfg_str teacher_config;
    kd_cfg_str teacher_ckpt;
    /* data */
    kd_cfg_str data_root;
    long long train_batch_size, train_num_workers;
    int batch_sampler; /* 0 AspectRatioBatchSampler, 1 DefaultBatchSampler */
    bool shuffle;
    kd_dataset_cfg train_dataset;
    long long val_batch_size, val_num_workers;
    kd_dataset_cfg val_dataset;
    kd_cfg_list resize_scale;
    double flip_prob;
    int on_bad_image; /* kd_bad_image_policy (worker/data/data_cfg.h): 0 skip, 1 replace */
    /* optimisation and schedule */
    double lr, momentum, weight_decay, clip_grad_max_norm;
    int amp;           /* 0 OptimWrapper, 1 AmpOptimWrapper */
    int amp_dtype;     /* 0 float16, 1 bfloat16 */
    double loss_scale; /* 0 = dynamic (float16) or none; > 0 static */
    bool auto_scale_lr;
    long long base_batch_size;
    double warmup_start_factor;
    long long warmup_iters;
    kd_cfg_list milestones;
    double gamma;
    long long max_epochs, max_iters, val_interval;
    /* gradient all-reduce */
    double grad_bucket_mb;
    bool grad_sync_overlap;
    /* status server */
    kd_cfg_str status_socket, status_tcp_host, status_token_file;
    long long status_tcp_port;
} kd_config;

const kd_opt_table *kd_options_table(void);
/* Defaults, then the file (if any), then each --set in order. */
kd_status kd_options_load(kd_config *cfg, const char *path, const char *const *sets, int n_sets,
                          kd_err *err);

#endif
