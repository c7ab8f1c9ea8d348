// A camera tile: its video, name and connection state, playing over WHEP. Used by the
// live page and the parents' share page.
import { WhepPlayer } from '/whep.js';

// Appends a tile for `cam` ({id, name}) to `grid`, starts playing `url`, and returns the
// player; `label(state, detail)` gives the state's text.
export function cameraTile(grid, cam, url, label) {
  const fig = document.createElement('figure');
  const video = document.createElement('video');
  video.muted = true; video.playsInline = true; video.autoplay = true;
  video.dataset.camera = cam.id;
  const cap = document.createElement('figcaption');
  const name = document.createElement('span');
  name.textContent = cam.name;
  const state = document.createElement('span');
  state.className = 'state';
  cap.append(name, state);
  fig.append(video, cap);
  grid.append(fig);
  const player = new WhepPlayer(video, {
    url,
    onState: (s, detail) => { state.className = `state ${s}`; state.textContent = label(s, detail); },
  });
  player.start();
  return player;
}
