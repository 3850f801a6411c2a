"""Classification finetuning / linear probing of a pretrained ViT on an ImageFolder dataset.

    torchrun --nproc_per_node=8 main_finetune.py --model vit_base_patch16 \
        --finetune PRETRAINED.ckpt --data_path IMAGENET_ROOT --output_dir OUT \
        --batch_size 32 --epochs 100 --blr 5e-4 --layer_decay 0.65 --weight_decay 0.05 \
        --drop_path 0.1 --reprob 0.25 --mixup 0.8 --cutmix 1.0 --dist_eval
    python main_finetune.py --device cpu ...          # one process
    ... --linprobe                                    # frozen backbone, Linear head only
    ... --eval --resume OUT/checkpoint-last.pth       # evaluate only

``--finetune`` takes a vlt pretraining checkpoint (Lightning .ckpt, ViT under
``backbone.vit.``), an MAE checkpoint or a timm state dict. See vlt/finetune/.
"""
from vlt.finetune import get_args_parser, main

if __name__ == "__main__":
    main(get_args_parser().parse_args())
