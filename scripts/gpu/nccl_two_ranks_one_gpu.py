# Whether NCCL lets two ranks share one GPU (the device machines have one):
# no. NCCL 2.28.9 (torch 2.11.0+cu130, H200) fails both ranks' init with
# "Duplicate GPU detected : rank 1 and rank 0 both on CUDA device 60", so
# tests/gcl/train_data_parallel_test.cc runs NCCL with a group of one rank,
# and a multi-rank NCCL run needs a machine with two GPUs (docs/gpu.md).
#   NCCL_DEBUG=WARN python3 scripts/gpu/nccl_two_ranks_one_gpu.py
import os, datetime, torch, torch.distributed as dist, torch.multiprocessing as mp
def run(rank):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT="29533")
    torch.cuda.set_device(0)
    try:
        dist.init_process_group("nccl", rank=rank, world_size=2, timeout=datetime.timedelta(seconds=20),
                                device_id=torch.device("cuda:0"))
        t = torch.full((4,), float(rank + 1), device="cuda:0")
        dist.all_reduce(t); torch.cuda.synchronize()
        print(f"rank {rank}: all_reduce ok {t.tolist()}", flush=True)
        dist.destroy_process_group()
    except Exception as e:
        print(f"rank {rank}: {type(e).__name__}: {str(e).splitlines()[0][:300]}", flush=True)
if __name__ == "__main__":
    print("torch", torch.__version__, "nccl", torch.cuda.nccl.version(), flush=True)
    mp.spawn(run, nprocs=2, join=True)
