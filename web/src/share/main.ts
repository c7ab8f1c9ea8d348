// The parents' page: Vue alone (no router, store or translations), so the first load
// stays small on a phone in a class group chat.
import { createApp } from 'vue';
import SharePage from './SharePage.vue';
import '../live/tile.css';
import './share.css';

createApp(SharePage).mount('#app');
