"""kNN retrieval of training segments: the prototype index (exact torch or faiss, sharded
under torch.distributed) and SegSort's inference (bank building, kNN vote per segment)."""
from segsort_ext.retrieval.index import Neighbours, SegmentIndex
from segsort_ext.retrieval.predictor import SegSortPredictor, add_training_segments

__all__ = ["Neighbours", "SegmentIndex", "SegSortPredictor", "add_training_segments"]
