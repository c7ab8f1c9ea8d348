// ECharts, only the parts the statistics page draws, in a chunk of its own that only that
// page loads. Tooltips are drawn on the canvas (renderMode 'richText'): the HTML tooltip
// would carry inline style attributes, which the CSP refuses.
import * as echarts from 'echarts/core';
import { BarChart, LineChart } from 'echarts/charts';
import { GridComponent, LegendComponent, TooltipComponent, AriaComponent } from 'echarts/components';
import { CanvasRenderer } from 'echarts/renderers';

echarts.use([BarChart, LineChart, GridComponent, LegendComponent, TooltipComponent, AriaComponent, CanvasRenderer]);

export { echarts };
