// Sites and cameras in scope, fetched once and shared by the pages that name them
// (filters, captions, time zones); refreshed when a page asks.
import { defineStore } from 'pinia';
import { computed, ref } from 'vue';
import { api } from '@/api/client';
import type { Camera, Site } from '@/api/types';

export const useCatalog = defineStore('catalog', () => {
  const sites = ref<Site[]>([]);
  const cameras = ref<Camera[]>([]);
  const loadedAt = ref(0);
  let inflight: Promise<void> | null = null;

  const siteById = computed(() => new Map(sites.value.map((s) => [s.id, s])));
  const cameraById = computed(() => new Map(cameras.value.map((c) => [c.id, c])));

  function load(force = false): Promise<void> {
    if (!force && loadedAt.value && Date.now() - loadedAt.value < 30_000) return Promise.resolve();
    if (inflight) return inflight;
    inflight = (async () => {
      try {
        const [s, c] = await Promise.all([api<Site[]>('/api/sites'), api<Camera[]>('/api/cameras')]);
        sites.value = s;
        cameras.value = c;
        loadedAt.value = Date.now();
      } finally {
        inflight = null;
      }
    })();
    return inflight;
  }

  function tzOfSite(site: string | null | undefined): string {
    return (site && siteById.value.get(site)?.timezone) || 'Asia/Shanghai';
  }
  function tzOfCamera(camera: string): string {
    return tzOfSite(cameraById.value.get(camera)?.site);
  }
  function cameraName(id: string): string {
    return cameraById.value.get(id)?.name || id;
  }
  function siteName(id: string | null | undefined): string {
    return (id && siteById.value.get(id)?.name) || id || '—';
  }

  return { sites, cameras, siteById, cameraById, load, tzOfSite, tzOfCamera, cameraName, siteName };
});
