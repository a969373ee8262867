/** What the host image cache counts, for /metrics and the logs. */
export class ImageStats {
  /** Prepares that found their image in the cache / had to wait for a download. */
  hits = 0;
  misses = 0;
  /** Downloads finished and verified, their bytes and seconds. */
  fetches = 0;
  fetchedBytes = 0;
  fetchSeconds = 0;
  /** Downloads that failed (digest mismatch, NATS), and images evicted for the cap. */
  failures = 0;
  evicted = 0;
  /** Bytes of verified images in the cache now. */
  cachedBytes = 0;
  /** Downloads under way and the bytes they have received so far (a prepare waiting on one). */
  downloading = 0;
  downloadingBytes = 0;
}
