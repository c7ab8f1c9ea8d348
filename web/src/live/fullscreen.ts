// Full screen for a camera tile, landscape where the phone allows it; either may be
// refused (iOS, desktop), which is fine.
export async function fullscreen(el: HTMLElement) {
  try {
    if (document.fullscreenElement) {
      await document.exitFullscreen();
      return;
    }
    await el.requestFullscreen();
  } catch {
    return;
  }
  try {
    const o = screen.orientation as ScreenOrientation & { lock?: (o: string) => Promise<void> };
    await o.lock?.('landscape');
  } catch {
    // Not allowed here.
  }
}
